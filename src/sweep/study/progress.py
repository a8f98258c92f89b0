"""How a running study reaches the terminal: one live view on a TTY, one line per trial otherwise.

The live view is redrawn in place from the study's own records (trials by state, the best trial,
each running trial's last reported epoch, completion times), so the parent of N worker processes
shows exactly what a single worker shows, and its workers print no trial lines of their own.
When stdout is not a terminal (CI, a log file, a notebook) every finished trial is one line, as
before; workers' errors always go to stderr.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.core import console
from sweep.study.study import best_trial, counts, failed_trials

if TYPE_CHECKING:
    from sweep.study.study import Sweep

MAX_RUNNING_SHOWN = 4


class View(Protocol):
    """What the worker loop tells the terminal; `Lines`, `Silent` and `Live` are the three."""

    def hooks(self, number: int, epochs: int) -> list[Callable[[Any], None]]: ...
    def trial_done(
        self, sweep: Sweep, trial: optuna.Trial, outcome: Any, seconds: float, run_id: str | None
    ) -> None: ...
    def note(self, text: str) -> None: ...
    def poll(self) -> None: ...
    def close(self) -> None: ...


class Lines:
    """One line per finished trial, a carriage-return epoch counter on a TTY; `[wN] ` prefixed."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def hooks(self, number: int, epochs: int) -> list[Callable[[Any], None]]:
        return [console.epoch_counter(f"trial {number}", epochs)]

    def trial_done(
        self, sweep: Sweep, trial: optuna.Trial, outcome: Any, seconds: float, run_id: str | None
    ) -> None:
        done, _ = counts(sweep.study)
        best = best_trial(sweep.study)
        line = console.trial_line(
            done,
            sweep.cfg.search.n_trials,
            trial.number,
            outcome.state.name,
            outcome.value[0] if isinstance(outcome.value, list) else outcome.value,
            (best.number, best.values[0]) if best else None,  # the first of several objectives
            trial.params,
            seconds,
            run_id,
            outcome.reason or outcome.note,
            sweep.objective,
        )
        console.say(line, self.prefix)

    def note(self, text: str) -> None:
        console.say(text, self.prefix)

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass


class Silent(Lines):
    """A worker process whose parent owns the live view: it prints nothing but errors."""

    def hooks(self, number: int, epochs: int) -> list[Callable[[Any], None]]:
        return []

    def trial_done(
        self, sweep: Sweep, trial: optuna.Trial, outcome: Any, seconds: float, run_id: str | None
    ) -> None:
        pass

    def note(self, text: str) -> None:
        pass


# --------------------------------------------------------------------------- the live view


@dataclass(frozen=True)
class Snapshot:
    """Where a study stands, read from its storage: everything the live view draws."""

    name: str
    target: int
    complete: int
    pruned: int
    failed: int
    running: list[tuple[int, int | None]]  # (trial number, last reported epoch)
    best: FrozenTrial | None
    pace: float | None  # finished trials per minute since the view opened
    metric: str = "value"  # the (first) objective's name, as the study records it

    @property
    def done(self) -> int:
        return self.complete + self.pruned

    @property
    def minutes_left(self) -> float | None:
        """At the current pace; None until a trial has finished under this view."""
        if not self.pace:
            return None
        return max(self.target - self.done, 0) / self.pace


def snapshot(study: optuna.Study, target: int, since: datetime) -> Snapshot:
    """Read the study once: counts by state, the best trial, running trials, the pace."""
    trials = study.get_trials(deepcopy=False)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    finished = by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED]
    recent = [t for t in finished if t.datetime_complete and t.datetime_complete >= since]
    minutes = (datetime.now() - since).total_seconds() / 60
    running = [
        (t.number, max(t.intermediate_values) if t.intermediate_values else None)
        for t in by_state[TrialState.RUNNING]
    ]
    return Snapshot(
        name=study.study_name,
        target=target,
        complete=len(by_state[TrialState.COMPLETE]),
        pruned=len(by_state[TrialState.PRUNED]),
        failed=len(failed_trials(study)),
        running=sorted(running),
        best=best_trial(study),
        pace=len(recent) / minutes if recent and minutes > 0 else None,
        metric=(study.metric_names or ["value"])[0],
    )


def fmt_minutes(minutes: float | None) -> str:
    if minutes is None:
        return "-"
    seconds = round(minutes * 60)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def render(snap: Snapshot, epochs: int, status: str = "") -> list[str]:
    """The view's lines: progress with pace and time left, the trials by state, the best trial,
    the running trials (and a status). Each fits 80 columns (a longer line is cut, not
    wrapped), so the pace and time left come before the counts, not after them."""
    pace = f"{snap.pace:.1f} trials/min" if snap.pace else "- trials/min"
    lines = [
        f"study {snap.name}  {snap.done}/{snap.target} finished  |  "
        f"{pace}, {fmt_minutes(snap.minutes_left)} left",
        f"trials  {snap.complete} complete, {snap.pruned} pruned, {snap.failed} failed, "
        f"{len(snap.running)} running",
    ]
    if snap.best is not None:
        lines.append(
            f"best  trial {snap.best.number}  "
            f"{snap.metric}={console.fmt_metric(snap.metric, snap.best.values[0])}  "
            f"{console.fmt_params(snap.best.params)}"
        )
    else:
        lines.append("best  -")
    shown = [
        f"trial {n} " + (f"epoch {e}/{epochs}" if e is not None else "starting")
        for n, e in snap.running[:MAX_RUNNING_SHOWN]
    ]
    extra = len(snap.running) - len(shown)
    more = f" +{extra}" if extra else ""
    lines.append("running  " + (", ".join(shown) if shown else "-") + more)
    if status:
        lines.append(status)
    return lines


class Live:
    """The study's live view, redrawn in place at most once per `interval` seconds."""

    def __init__(
        self, study: optuna.Study, target: int, epochs: int, out: TextIO | None = None
    ) -> None:
        self.study, self.target, self.epochs = study, target, epochs
        self.out = out or sys.stdout
        self.since = datetime.now()
        self.interval = 1.0
        self.status = ""
        self.drawn = 0  # lines of the last frame; the cursor sits at the end of its last line
        self.frame: list[str] = []
        self.last = 0.0
        self.refresh()

    def hooks(self, number: int, epochs: int) -> list[Callable[[Any], None]]:
        return [lambda log: self.poll()]

    def trial_done(
        self, sweep: Sweep, trial: optuna.Trial, outcome: Any, seconds: float, run_id: str | None
    ) -> None:
        self.refresh()

    def note(self, text: str) -> None:
        self.status = text
        self.refresh()

    def poll(self) -> None:
        if time.monotonic() - self.last >= self.interval:
            self.refresh()

    def refresh(self) -> None:
        """Read the study and draw its frame over the last one."""
        self.last = time.monotonic()
        self.draw(render(snapshot(self.study, self.target, self.since), self.epochs, self.status))

    def draw(self, lines: list[str]) -> None:
        """Overwrite the last frame in place, unless nothing changed.

        The frame's text (study and metric names, params) is the store's: it passes
        `console.shown` before the cursor escapes of the redraw are put around it.
        """
        width = max(shutil.get_terminal_size().columns - 1, 20)  # a wrapped line breaks the redraw
        lines = [row[:width] for line in lines for row in console.shown(line).split("\n")]
        if self.drawn and lines == self.frame:
            return
        up = f"\x1b[{self.drawn - 1}A" if self.drawn > 1 else ""
        body = "\n".join(f"\x1b[2K{line}" for line in lines)
        self.out.write(f"\r{up}{body}\x1b[J")
        self.out.flush()
        self.drawn, self.frame = len(lines), lines

    def close(self) -> None:
        """Draw the last frame and leave it on screen; what follows prints below it."""
        if self.drawn:
            self.refresh()
            self.out.write("\n")
            self.out.flush()
            self.drawn = 0


def is_live() -> bool:
    """Whether a sweep here shows the live view: stdout is a terminal."""
    return sys.stdout.isatty()


def open_view(sweep: Sweep) -> View:
    """The live view when stdout is a terminal, else one line per trial (CI and logs read them)."""
    if is_live():
        return Live(sweep.study, sweep.cfg.search.n_trials, sweep.cfg.trainer.epochs)
    return Lines()
