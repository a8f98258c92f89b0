"""The trial part: study trials of the tutorial's configuration with all tracking into a temporary
SQLite MLflow store, side by side with the same trials untracked, the bare loop and `model.fit`:
a whole trial against `model.fit`, and where its time goes.

Why: a trial is more than its training. A whole tracked trial should still be at least 8x faster
than `model.fit`, and the per-epoch hooks, everything outside training and the tracking alone are
each held to a share of training (TARGETS), timed phase by phase to show where the rest goes.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from benchmarks.common import (
    FIXED_SPACE,
    TARGETS,
    Row,
    Section,
    background_writes,
    open_bench_sweep,
    verdict,
)

WHAT = "trials with all tracking"
# A tracked trial's phases, as (label, module, attribute); nested: inside the one before it.
PHASES = (
    ("ask", "sweep.study.worker", "next_trial"),
    ("run start", "sweep.tracking.runs:Tracker", "start_run"),
    ("model build", "sweep.run", "build"),
    ("params", "sweep.tracking.runs:Run", "log_params"),
    ("training", "sweep.run", "train"),
    ("final metrics", "sweep.train.loop", "final_metrics"),  # nested in training
    ("predict_ms", "sweep.run", "predict_ms"),
    ("plots (main thread)", "sweep.run", "log_plots"),
    ("model logging", "sweep.tracking.runs:Run", "log_keras"),
    ("waiting for background writes", "sweep.tracking.runs:Run", "written"),
    ("run end", "sweep.tracking.runs:Run", "end"),
    ("tell", "sweep.study.worker", "tell"),
)
NESTED = {"final metrics"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The trial part's size."""
    p.add_argument("--trial-trials", type=int, default=8, help="trials per mode in the trial part")


def run(args: argparse.Namespace, store: Path) -> Section:
    """The trial part at the command line's sizes."""
    return trial_section(bench_trial(store / "trial", args.trial_trials, args.set))


@contextmanager
def phase_clock(seconds: dict[str, float]) -> Iterator[None]:
    """Add each phase's wall seconds to `seconds` while the block runs: every function of
    PHASES wrapped in a timer (a measuring instrument for the benchmark only), restored after."""
    import importlib

    saved = []
    for label, where, name in PHASES:
        module, _, cls = where.partition(":")
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner
        original = getattr(owner, name)

        def timed(*args: Any, _f: Callable = original, _label: str = label, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                seconds[_label] = seconds.get(_label, 0.0) + time.perf_counter() - start

        saved.append((owner, name, original))
        setattr(owner, name, timed)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def bench_trial(store: Path, measured: int, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Trials with `tracking=mlflow` and `tracking=none`, the bare loop and `model.fit`, side by
    side in alternating rounds, so a shared machine's drift favours none of them.

    One warm-up trial each, then two rounds of: a block of `measured // 2` tracked trials (each
    block timed until its last artifact is written), the same untracked, one bare loop (the same
    training with no hooks and no tracking) and one `model.fit` of the same epochs.
    """
    from sweep.tracking import Reader, warm_up

    sweeps = {m: _trial_sweep(store / m, m, measured, overrides) for m in ("mlflow", "none")}
    walls, ids, block = {"mlflow": 0.0, "none": 0.0}, [], max(1, measured // 2)
    bare, fit, phases = [], [], {}
    warm_up()  # as `run_worker` does
    with background_writes():
        first = _timed_trials(sweeps["mlflow"], 1)
        _timed_trials(sweeps["none"], 1)
        for _ in range(2):
            for mode, sweep in sweeps.items():
                clock = phase_clock(phases) if mode == "mlflow" else contextlib.nullcontext()
                with clock:
                    seconds, run_ids = _timed_trials(sweep, block)
                walls[mode] += seconds
                ids += run_ids if mode == "mlflow" else []
            bare.append(_bare_loop(sweeps["none"].cfg))
            fit.append(_fit_seconds(sweeps["none"].cfg))
    reader = Reader(sweeps["mlflow"].tracker.uri)
    n = 2 * block
    return {
        "first_wall": first[0],
        "first_train": _train_seconds(reader, first[1][0]),
        "wall": walls["mlflow"] / n,
        "wall_none": walls["none"] / n,
        "train": sum(_train_seconds(reader, i) for i in ids) / n,
        "bare": statistics.mean(bare),
        "fit": statistics.mean(fit),
        "n": n,
        "artifacts": sorted(reader.artifact_names(reader.run(ids[-1]))),
        "phases": {label: total / n for label, total in phases.items()},
    }


def _trial_sweep(store: Path, tracking: str, measured: int, overrides: Sequence[str]) -> Any:
    """A study sized for the warm-up trial plus two blocks, every trial the tutorial's."""
    n = 2 * max(1, measured // 2) + 1
    return open_bench_sweep(
        store, *FIXED_SPACE, *overrides, f"tracking={tracking}", f"search.n_trials={n}"
    )


def _train_seconds(reader: Any, run_id: str) -> float:
    """The loop's own time of one trial, as its run recorded it."""
    return reader.run(run_id).data.metrics["train_seconds"]


def _timed_trials(sweep: Any, n: int) -> tuple[float, list[str]]:
    """Seconds for `n` trials until their artifacts are written, and their MLflow run ids."""
    from sweep.study import worker
    from sweep.study.study import RUN_ATTR
    from sweep.tracking import drain

    start, ids = time.perf_counter(), []
    for _ in range(n):
        trial = worker.next_trial(sweep)
        worker.run_trial(sweep, trial)
        ids += [trial.user_attrs.get(RUN_ATTR)]
    drain()
    return time.perf_counter() - start, ids


def _bare_loop(cfg: DictConfig) -> float:
    """The same training with no hooks and no tracking: what the trial's hooks cost on top."""
    from sweep.core.objects import build
    from sweep.train.data import dataset_for
    from sweep.train.loop import reset_state, train

    reset_state(cfg.seed)
    data = dataset_for(cfg)
    model = build(cfg.model, "model", input_dim=data.input_dim, output_dim=data.output_dim)
    opt = build(cfg.optimizer, "optimizer")
    t = cfg.trainer
    return train(model, opt, data, t.epochs, t.batch_size, cfg.seed).seconds


def _fit_seconds(cfg: DictConfig) -> float:
    """The tutorial's `model.fit` on the trial's model, data and epochs (the reference)."""
    from sweep.core.objects import build
    from sweep.train.data import dataset_for
    from sweep.train.loop import fit_like_tutorial, reset_state

    reset_state(cfg.seed)
    data = dataset_for(cfg)
    model = build(cfg.model, "model", input_dim=data.input_dim, output_dim=data.output_dim)
    start = time.perf_counter()
    fit_like_tutorial(model, data, cfg.trainer.epochs, cfg.trainer.batch_size)
    return time.perf_counter() - start


def target_row(what: str, value: float, text: str, key: str, at_least: bool) -> Row:
    """A row whose value must reach TARGETS[key] (`at_least`) or stay under it."""
    goal = TARGETS[key]
    ok = value >= goal if at_least else value <= goal
    shown = f"{goal:g}x" if key not in ("hooks", "outside", "overhead") else f"{goal:.0%}"
    return Row(what, text, f"{'>=' if at_least else '<='} {shown}", verdict(ok))


def phase_text(phases: dict[str, float], wall: float) -> str:
    """`ask 17 · run start 14 · ... · other 30`: each phase's mean milliseconds in PHASES' order,
    the nested in brackets, and what no phase holds (the rest of the wall time)."""
    parts, covered = [], 0.0
    for label, _, _ in PHASES:
        ms = 1000 * phases.get(label, 0.0)
        parts.append(f"({label} {ms:.0f})" if label in NESTED else f"{label} {ms:.0f}")
        covered += 0.0 if label in NESTED else phases.get(label, 0.0)
    return " · ".join([*parts, f"other {1000 * (wall - covered):.0f}"])


def trial_section(r: dict[str, Any]) -> Section:
    """A whole trial against `model.fit`, and where its time goes beyond the bare loop."""
    added = (r["wall"] - r["wall_none"]) / r["train"]
    outside = r["wall"] / r["train"] - 1
    hooks = r["train"] / r["bare"] - 1
    sec = Section(
        "2. One trial with all tracking (tutorial configuration, temporary SQLite MLflow store)"
    )
    sec.rows += [
        Row("first trial in a fresh worker: wall / training",
            f"{r['first_wall']:.2f} s / {r['first_train']:.2f} s"),
        Row(f"per trial, mean of {r['n']}: wall with tracking / training",
            f"{r['wall']:.2f} s / {r['train']:.2f} s"),
        Row("per trial, same trials with `tracking=none`: wall", f"{r['wall_none']:.2f} s"),
        Row("`model.fit` of the same epochs (the tutorial's compile, fit, evaluate)",
            f"{r['fit']:.2f} s"),
        target_row("one trial with all tracking against `model.fit`", r["fit"] / r["wall"],
                   f"{r['fit'] / r['wall']:.1f}x", "trial_vs_fit", at_least=True),
        Row("the bare loop (the same training, no per-epoch hooks, no tracking)",
            f"{r['bare']:.2f} s ({r['fit'] / r['bare']:.1f}x faster than `model.fit`)"),
        target_row("the per-epoch hooks (pruning, loss metrics, progress) on the bare loop",
                   hooks, f"{hooks:+.0%}", "hooks", at_least=False),
        target_row("everything outside training (build, ask/tell, tracking, artifacts)",
                   outside, f"{outside:+.0%}", "outside", at_least=False),
        target_row("of which tracking and artifacts (wall - wall without tracking)", added,
                   f"{added:+.0%}", "overhead", at_least=False),
    ]  # fmt: skip
    if r.get("phases"):
        sec.rows.append(
            Row("a tracked trial by phase, mean ms", phase_text(r["phases"], r["wall"]))
        )
    sec.notes.append(
        "wall = a worker's time per trial, blocks of trials timed until every artifact is on "
        "disk: ask, model build, training, params, tags, per-epoch and final metrics, model, "
        "plots, config/overrides/replay files, tell, run end. training = the loop's own time "
        "(`train_seconds`: tracing, the epochs with the pruning, metric and progress hooks, "
        "final metrics); bare loop and `model.fit`: once per round, alternating with the "
        "trials. By phase: each phase's wall time in the tracked trials (the plots render on "
        "the background writer meanwhile, so the phases beside it run slower); other = ask to "
        "tell not in a phase (the heartbeat, the pruning flush, the progress line). Artifacts "
        "of the last trial: " + ", ".join(r["artifacts"])
    )
    return sec
