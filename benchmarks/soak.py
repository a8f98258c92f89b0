"""The soak part: a 300-trial study on two spawned workers and the embedded stores (SQLite study
and MLflow store, artifacts on disk), the tutorial's configuration in every trial: per-trial CPU
(and wall) time at the end against the start, each worker's RSS growth, the stores.

Why: a study that grows must not slow its trials nor grow its workers: the end's per-trial CPU
time within 10% of the start's, each worker under 50 MB of growth. Every trial does the same
work, so a change of pace is the study's growth (its reads of the trials counted to show it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.common import (
    FIXED_SPACE,
    TARGETS,
    Row,
    Section,
    background_writes,
    memory_mb,
    open_bench_sweep,
    say,
    verdict,
)

WHAT = "a long study on two workers: pace and memory"
SOAK_SKIP = 10  # each worker's first trials: tracing, imports and caches made once
SOAK_WINDOW = 30  # trials per worker compared at the start (after SOAK_SKIP) and at the end
SOAK_DRIFT = 0.10  # the end's per-trial time within 10% of the start's
SOAK_JOBS = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The soak part's study size, epochs and trials."""
    p.add_argument("--soak-trials", type=int, default=300, help="study size in the soak part")
    p.add_argument("--soak-epochs", type=int, default=10, help="epochs per trial in the soak part")
    p.add_argument(
        "--soak-space", choices=("fixed", "default"), default="fixed",
        help="the soak part's trials: the tutorial's configuration, or the default search space",
    )  # fmt: skip


def run(args: argparse.Namespace, store: Path) -> Section:
    """The soak part at the command line's sizes."""
    r = bench_soak(store, args.soak_trials, args.soak_epochs, args.soak_space, args.set)
    return soak_section(r, args.soak_trials, args.soak_epochs, args.soak_space)


def soak_overrides(trials: int, epochs: int, space: str) -> list[str]:
    """The soak's study: `trials` of `epochs` each, two workers; the tutorial's configuration in
    every trial (the same work each time, so a change of pace is the study's growth) unless
    `space` is `default` (the default search space: TPE, architectures that differ)."""
    # The default space's learning rates up to 0.3 diverge often: keep counting, as `search` does.
    fixed = list(FIXED_SPACE) if space == "fixed" else ["search.max_failed_trials=0"]
    return [
        *fixed,
        f"search.n_trials={trials}",
        f"trainer.epochs={epochs}",
        f"search.jobs={SOAK_JOBS}",
        "search.study_name=soak",
    ]


def count_reads(study: Any) -> dict[str, float]:
    """Count and time every read of the study's trials from here on (the pruner's every epoch,
    the sampler's, the worker's own counts): what a trial's cost may grow with."""
    storage = study._storage
    inner = storage.get_all_trials
    tally = {"reads": 0, "read_s": 0.0}

    def get_all_trials(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            tally["reads"] += 1
            tally["read_s"] += time.perf_counter() - start

    storage.get_all_trials = get_all_trials
    return tally


def soak_trial(sweep: Any, tally: dict[str, float]) -> dict[str, float] | None:
    """One trial as a worker runs it, measured: seconds to get it and to run it (artifacts
    written), the worker's CPU seconds, its reads of the study, memory; None once it is done."""
    from sweep.study import worker
    from sweep.study.progress import Silent
    from sweep.tracking import drain

    start, cpu, before = time.perf_counter(), time.process_time(), dict(tally)
    if (trial := worker.next_trial(sweep)) is None:
        return None
    asked = time.perf_counter()
    worker.run_trial(sweep, trial, Silent())
    drain()
    return {
        "number": trial.number,
        "ask_s": asked - start,
        "trial_s": time.perf_counter() - asked,
        "cpu_s": time.process_time() - cpu,
        "reads": tally["reads"] - before["reads"],
        "read_s": tally["read_s"] - before["read_s"],
        **memory_mb(),
    }


def soak_worker(
    store: str, index: int, trials: int, epochs: int, space: str, overrides: Sequence[str] = ()
) -> list[dict[str, float]]:
    """One soak worker in its own process, pinned and threaded as `search.jobs` runs it: its
    trials one after another, each measured (`soak_trial`)."""
    from sweep.study.worker import pin_worker

    threads = pin_worker(index, SOAK_JOBS)
    extra = [f"trainer.threads={threads}"] if threads else []
    sweep = open_bench_sweep(
        Path(store), *soak_overrides(trials, epochs, space), *overrides, *extra
    )
    tally, samples = count_reads(sweep.study), []
    with background_writes():
        while (sample := soak_trial(sweep, tally)) is not None:
            samples.append({"trial": len(samples) + 1, **sample})
            if len(samples) % 25 == 0:
                say(f"  soak part: worker {index}, {len(samples)} trials, study trial "
                    f"{sample['number']}, RSS {sample['VmRSS']:.0f} MB")  # fmt: skip
    return samples


def store_sizes(store: Path) -> dict[str, float]:
    """MB on disk of the embedded stores (each SQLite file with its WAL), and the artifacts'."""
    files = [p for p in (store / "artifacts").rglob("*") if p.is_file()]
    return {
        "optuna.db": sum(p.stat().st_size for p in store.glob("optuna.db*")) / 1e6,
        "mlflow.db": sum(p.stat().st_size for p in store.glob("mlflow.db*")) / 1e6,
        "artifacts": sum(p.stat().st_size for p in files) / 1e6,
        "artifact_files": len(files),
    }


def bench_soak(
    store: Path, trials: int, epochs: int, space: str = "fixed", overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The study made here as `python -m sweep sweep` makes it, then two spawned workers on it
    (SQLite study, SQLite MLflow store, artifacts on disk) until it has `trials` trials."""
    from collections import Counter

    where = store / "soak"
    sweep = open_bench_sweep(where, *soak_overrides(trials, epochs, space), *overrides)
    start = time.perf_counter()
    with ProcessPoolExecutor(SOAK_JOBS, mp_context=get_context("spawn")) as pool:
        jobs = [
            pool.submit(soak_worker, str(where), i, trials, epochs, space, list(overrides))
            for i in range(SOAK_JOBS)
        ]
        workers = [job.result() for job in jobs]
    wall = time.perf_counter() - start
    states = Counter(t.state.name for t in sweep.study.get_trials(deepcopy=False))
    return {"workers": workers, "wall": wall, "states": dict(states), "sizes": store_sizes(where)}


def soak_windows(samples: list[dict[str, float]]) -> tuple[list[dict], list[dict], int]:
    """A worker's trials at the start (past its one-off first ones) and at the end, and how many
    first ones were skipped; clamped for a short soak."""
    skip = min(SOAK_SKIP, len(samples) // 3)
    width = max(1, min(SOAK_WINDOW, (len(samples) - skip) // 2))
    return samples[skip : skip + width], samples[-width:], skip


def _median(samples: Sequence[dict[str, float]], *keys: str) -> float:
    """The median over trials of the sum of `keys` (e.g. ask_s + trial_s)."""
    return statistics.median(sum(s[k] for k in keys) for s in samples)


def soak_section(r: dict[str, Any], trials: int, epochs: int, space: str = "fixed") -> Section:
    """Pace and memory at the end against the start, per worker and pooled; the stores' sizes."""
    windows = [soak_windows(w) for w in r["workers"] if w]
    start = [s for first, _, _ in windows for s in first]
    end = [s for _, last, _ in windows for s in last]
    pace = {k: (_median(start, *keys), _median(end, *keys)) for k, keys in
            {"cpu": ("cpu_s",), "wall": ("ask_s", "trial_s"), "ask": ("ask_s",),
             "read": ("read_s",), "reads": ("reads",)}.items()}  # fmt: skip
    drift = {k: pace[k][1] / pace[k][0] - 1 for k in ("cpu", "wall")}
    skip, width = windows[0][2], len(windows[0][1])
    what = "the tutorial's configuration" if space == "fixed" else "the default search space"
    sec = Section(f"6. Long soak: a {trials}-trial study, {SOAK_JOBS} workers, embedded stores "
                  f"({what}, {epochs} epochs a trial)")  # fmt: skip
    sec.rows += [
        Row("trials in the study / run by each worker / wall",
            f"{', '.join(f'{n} {k.lower()}' for k, n in sorted(r['states'].items()))} / "
            f"{' + '.join(str(len(w)) for w in r['workers'])} / {r['wall']:.0f} s"),
        Row(f"per-trial CPU time of a worker (ask, train, log, artifacts), median of trials "
            f"{skip + 1}-{skip + width} / of the last {width}, every worker",
            f"{pace['cpu'][0]:.2f} s / {pace['cpu'][1]:.2f} s ({drift['cpu']:+.1%})",
            f"within {SOAK_DRIFT:.0%}", verdict(abs(drift["cpu"]) <= SOAK_DRIFT)),
        Row("per-trial wall time, the same trials (other processes' load moves it)",
            f"{pace['wall'][0]:.2f} s / {pace['wall'][1]:.2f} s ({drift['wall']:+.1%})"),
        Row("of which asking for a trial (`next_trial`): start / end",
            f"{1000 * pace['ask'][0]:.0f} ms / {1000 * pace['ask'][1]:.0f} ms"),
        Row("of which reading the study's trials (Optuna `get_all_trials`): start / end",
            f"{1000 * pace['read'][0]:.1f} ms / {1000 * pace['read'][1]:.1f} ms in "
            f"{pace['reads'][0]:.0f} / {pace['reads'][1]:.0f} reads a trial"),
    ]  # fmt: skip
    sec.rows += [_soak_memory_row(i, w, skip) for i, w in enumerate(r["workers"]) if w]
    sizes = r["sizes"]
    sec.rows.append(
        Row("stores after the soak",
            f"optuna.db {sizes['optuna.db']:.1f} MB, mlflow.db {sizes['mlflow.db']:.1f} MB, "
            f"artifacts {sizes['artifacts']:.0f} MB in {sizes['artifact_files']} files")
    )  # fmt: skip
    sec.notes += [_soak_trend(i, w) for i, w in enumerate(r["workers"]) if w]
    sec.notes.append(
        "per-trial time = from asking for a trial to its last artifact on disk: the worker "
        "process's CPU seconds (all its threads), which the target is about, and wall seconds, "
        "which a shared machine's other processes stretch; memory = VmRSS after each trial. "
        "Diverged trials fail and do not count towards search.n_trials; a worker's surplus "
        "give-back (both asked for the last slot) is a FAIL."
    )
    return sec


def _soak_memory_row(index: int, samples: list[dict[str, float]], skip: int) -> Row:
    """One worker's RSS after its one-off first trials against its last, with the 50 MB target."""
    base, last = samples[max(skip - 1, 0)], samples[-1]
    growth = last["VmRSS"] - base["VmRSS"]
    return Row(
        f"worker {index}: RSS after trial {int(base['trial'])} / after trial {int(last['trial'])}"
        f" (peak {last['VmHWM']:.0f} MB)",
        f"{base['VmRSS']:.0f} MB / {last['VmRSS']:.0f} MB ({growth:+.1f} MB)",
        f"< {TARGETS['growth_mb']:g} MB",
        verdict(growth < TARGETS["growth_mb"]),
    )


def _soak_trend(index: int, samples: list[dict[str, float]], block: int = 25) -> str:
    """A worker's pace and memory by blocks of trials, to show a trend (or its absence)."""
    blocks = [samples[i : i + block] for i in range(0, len(samples), block)]
    cpu = ", ".join(f"{_median(b, 'cpu_s'):.2f}" for b in blocks)
    wall = ", ".join(f"{_median(b, 'ask_s', 'trial_s'):.2f}" for b in blocks)
    rss = ", ".join(f"{b[-1]['VmRSS']:.0f}" for b in blocks)
    return (
        f"worker {index}, by blocks of {block} trials: median CPU seconds a trial {cpu}; "
        f"median wall seconds {wall}; RSS at each block's end (MB) {rss}"
    )
