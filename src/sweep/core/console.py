"""What people read on the terminal: one line per trial, a live epoch counter on a TTY."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from sweep.core.secrets import printable

if TYPE_CHECKING:  # type names only: printing must not import TensorFlow
    from sweep.train.loop import EpochHook, EpochLog, TrainResult


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# Metrics that are fractions of 1 (a score, higher is better): four places, as people quote them.
SCORES = ("accuracy",)


def fmt_metric(name: str, value: float | None) -> str:
    """A metric as people read it: a score to four places (`0.9412`, not `9.412e-01`), seconds
    to a tenth, a count whole, and a loss, which spans decades, in scientific form (`1.250e-01`)."""
    if value is None:
        return "-"
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)  # a forged record's text: shown as it is, escaped by the caller
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if name.endswith(SCORES):
        return f"{value:.4f}"
    if name.endswith("_seconds"):
        return f"{value:.1f}"
    if name.endswith("_ms"):
        return f"{value:.3g}"
    if name.startswith("n_"):
        return f"{value:.0f}"
    return f"{value:.3e}"


def fmt_params(params: dict[str, Any]) -> str:
    """`depth=3 width=20 activation=tanh lr=0.0123`: leaf names are enough to read a trial."""
    return " ".join(f"{k.rsplit('.', 1)[-1]}={fmt_value(v)}" for k, v in params.items())


def shown(text: Any) -> str:
    """Text as the terminal may show it: each line through `config.printable` (URLs masked,
    control characters as `?`), the newlines between lines kept.

    Run names, tags, params, trial attributes and records come from stores anyone on a shared
    server can write, so every line `say`, `error` and the live view print passes here: an
    escape sequence in any of them reaches the screen as `?`, never as a command. Escapes of
    our own (clearing a counter, redrawing the view) are added after it.
    """
    return "\n".join(printable(line) for line in str(text).split("\n"))


def say(text: str, prefix: str = "") -> None:
    """Print a whole line (clearing a live counter first) and flush, so workers don't interleave."""
    if sys.stdout.isatty():  # a counter can only be live on a terminal
        sys.stdout.write(f"\r{shown(prefix + text)}\x1b[K\n")
    else:
        sys.stdout.write(f"{shown(prefix + text)}\n")
    sys.stdout.flush()


def error(text: str) -> None:
    """One `error: ...` line on stderr, filtered as `say`'s are (a worker's last word)."""
    sys.stderr.write(f"error: {shown(text)}\n")
    sys.stderr.flush()


def result_line(result: TrainResult, tutorial: bool = True) -> str:
    """A single run's outcome (beside the tutorial's figures, for its problem)."""
    tutorial = " (tutorial: 0.0034)" if tutorial else ""
    h = result.history
    head = f"epoch 1 loss {h[0].train_loss:.4f}, epoch {len(h)} loss {h[-1].train_loss:.4f}; "
    if "train_accuracy" in result.metrics:
        m = result.metrics
        return head + (
            f"accuracy train {m['train_accuracy']:.4f}, val {m['val_accuracy']:.4f}, "
            f"test {m['test_accuracy']:.4f}; {result.seconds:.1f}s"
        )
    return head + (
        f"train MSE {result.train_mse:.4f}{tutorial}, val MSE {result.val_mse:.4f}, "
        f"test MSE {result.test_mse:.4f}; {result.seconds:.1f}s"
    )


def epoch_counter(label: str, epochs: int) -> EpochHook:
    """A carriage-return progress line per epoch; silent when stdout is not a terminal."""

    def hook(log: EpochLog) -> None:
        if sys.stdout.isatty():
            sys.stdout.write(
                f"\r  {label} epoch {log.epoch}/{epochs}  train_loss={log.train_loss:.3g} "
                f"val_loss={log.val_loss:.3g}\x1b[K"
            )
            sys.stdout.flush()

    return hook


def trial_line(
    done: int,
    total: int,
    number: int,
    state: str,
    value: float | None,
    best: tuple[int, float] | None,
    params: dict[str, Any],
    seconds: float,
    run_id: str | None,
    reason: str | None = None,
    metric: str = "val_mse",
) -> str:
    """One trial: `[ 3/30] trial 2  COMPLETE  val_mse=1.2e-03  best=1.1e-03 (#1)  depth=3 ...`."""
    width = len(str(total))
    parts = [f"[{done:>{width}}/{total}] trial {number:<3d} {state:<8s}"]
    parts.append(f"{metric}={fmt_metric(metric, value):<9s}")
    parts.append(f"best={fmt_metric(metric, best[1])} (#{best[0]})" if best else "best=-")
    parts.append(fmt_params(params))
    parts.append(f"{seconds:.1f}s")
    if run_id:
        parts.append(f"run {run_id[:8]}")
    if reason:
        parts.append(f"({reason})")
    return "  ".join(parts)
