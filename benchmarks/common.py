"""What every part shares: the targets in one table (as the issues state them), the table's rows,
sections and rendering, and the helpers that compose the real config and open a real study on a
part's temporary stores, never the repo's mlruns/ nor a user's server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
# Every trial of the trial and workers parts is the tutorial's configuration (no search space),
# so one worker and two workers do exactly the same work.
FIXED_SPACE = ("~search.space.model", "~search.space.optimizer")
TARGETS = {
    "speedup": 12.0,  # the bare loop against model.fit (issue 15)
    "mse_ratio": 1.3,
    "trial_vs_fit": 8.0,  # one whole tracked trial against model.fit of the same epochs
    "hooks": 0.10,  # the per-epoch hooks on top of the bare loop
    "outside": 0.25,  # everything outside training, as a share of training (issue 26)
    "overhead": 0.30,  # tracking and artifacts, as a share of training
    "scaling": 1.7,  # trials per minute over the trials' span, 2 workers against 1
    "growth_mb": 50.0,
    "peers": 12.0,  # a peer's wall time for the same study against `make sweep`'s (issue 26)
}
# search.jobs=2 against search.jobs=1, end to end from the shell, by study size (issue 15);
# a size not listed must simply not be slower.
WORKER_TARGETS = {12: 1.4, 30: 1.7}


@dataclass
class Row:
    """One line of the table: what, measured value, target, PASS/FAIL (or blank)."""

    what: str
    value: str
    target: str = ""
    verdict: str = ""


@dataclass
class Section:
    """One part's table: a bold title, its rows, and notes printed in italics under it."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verdict(ok: bool) -> str:
    """The result column of a row that has a target."""
    return "PASS" if ok else "FAIL"


def render(sections: Sequence[Section], header: Sequence[str]) -> str:
    """Markdown: a header paragraph, then one table per part with its notes under it."""
    lines = [*header, ""]
    for sec in sections:
        lines += [f"**{sec.title}**", "", "| measurement | value | target | result |"]
        lines.append("| --- | --- | --- | --- |")
        lines += [f"| {r.what} | {r.value} | {r.target} | {r.verdict} |" for r in sec.rows]
        lines += [""] + [f"_{n}_" for n in sec.notes] + [""]
    return "\n".join(lines).rstrip() + "\n"


def say(text: str) -> None:
    """Progress on the terminal as it happens, even when piped."""
    print(text, flush=True)


def compose_cfg(store: Path, *overrides: str) -> DictConfig:
    """The project's real config with every store under `store` (never the repo's mlruns/)."""
    from hydra import compose, initialize_config_dir

    from sweep.config.checks import prepare

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw = compose(config_name="config", overrides=[*store_overrides(store), *overrides])
    return prepare(raw)


def store_overrides(store: Path) -> list[str]:
    """Pin both stores to `store`, whatever MLFLOW_TRACKING_URI says in this shell."""
    return [
        f"paths.store={store}",
        f"tracking.uri=sqlite:///{store}/mlflow.db",
        f"search.storage=sqlite:///{store}/optuna.db",
    ]


def open_bench_sweep(store: Path, *overrides: str) -> Any:
    """A real study (and its parent run) on `store`, opened as a worker opens it."""
    from sweep.study.study import open_sweep

    return open_sweep(compose_cfg(store, *overrides), ["bench"])


@contextmanager
def background_writes() -> Iterator[None]:
    """Artifacts written by the background thread, as in `run_worker`; always switched off after."""
    from sweep.tracking import write_in_background

    write_in_background(True)
    try:
        yield
    finally:
        write_in_background(False)


def clean_env(**extra: str) -> dict[str, str]:
    """This shell's environment without MLFLOW_* (the bench must not write to a user's server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def memory_mb() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process, in MB, from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) / 1024
    return out


def load() -> str:
    """The 1/5/15-minute load averages: the machine is shared, so every table records them."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def rotated(
    runs: dict[str, Callable[[int], tuple[float, float]]], seeds: int, part: str, metric: str
) -> dict[str, list[float]]:
    """Every contestant once per seed, in a rotating order, so a machine's drift favours none:
    `<name>_s` (seconds) and `<name>_<metric>` lists."""
    out: dict[str, list[float]] = {f"{k}_{m}": [] for k in runs for m in ("s", metric)}
    names = list(runs)
    for seed in range(seeds):
        for name in names[seed % len(names) :] + names[: seed % len(names)]:
            seconds, value = runs[name](seed)
            out[f"{name}_s"].append(seconds)
            out[f"{name}_{metric}"].append(value)
            say(f"  {part} part: seed {seed} {name:<4s} {seconds:6.2f} s  {metric} {value:.4f}")
    return out
