"""The memory part: a worker's resident memory over 30 study trials of the default search space
(VmRSS after each, VmHWM at the end), in a fresh spawned process.

Why: a worker runs trial after trial in one process, so whatever a trial leaves behind adds
up; growth from trial 5 to trial 30, past the first trials' one-off
allocations, must stay under 50 MB.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmarks.common import (
    TARGETS,
    Row,
    Section,
    background_writes,
    memory_mb,
    open_bench_sweep,
    verdict,
)

WHAT = "a worker's RSS over a study"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The memory part's study size and epochs."""
    p.add_argument("--memory-trials", type=int, default=30, help="trials in the memory part")
    p.add_argument(
        "--memory-epochs", type=int, default=10, help="epochs per trial in the memory part"
    )


def run(args: argparse.Namespace, store: Path) -> Section:
    """The memory part at the command line's sizes."""
    samples = bench_memory(store, args.memory_trials, args.memory_epochs, args.set)
    return memory_section(samples, args.memory_epochs)


def memory_worker(
    store: str, trials: int, epochs: int, overrides: Sequence[str] = ()
) -> list[dict[str, float]]:
    """In a fresh process: a real study's trials one after another, memory after each."""
    from sweep.study import worker
    from sweep.study.progress import Lines
    from sweep.tracking import drain

    sweep = open_bench_sweep(
        Path(store), *overrides, f"search.n_trials={trials}", f"trainer.epochs={epochs}"
    )
    samples = [{"trial": 0, **memory_mb()}]
    with background_writes():
        while (trial := worker.next_trial(sweep)) is not None:
            worker.run_trial(sweep, trial, Lines("  memory part: "))
            drain()
            samples.append({"trial": len(samples), **memory_mb()})
    return samples


def bench_memory(
    store: Path, trials: int, epochs: int, overrides: Sequence[str] = ()
) -> list[dict[str, float]]:
    """`memory_worker` in a spawned process, so the numbers are a fresh worker's own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        job = pool.submit(memory_worker, str(store / "memory"), trials, epochs, list(overrides))
        return job.result()


def memory_section(samples: list[dict[str, float]], epochs: int) -> Section:
    """Growth from trial 5 to 30, past the first trials' one-off allocations (clamped if fewer)."""
    at = {int(s["trial"]): s for s in samples}
    last = max(at)
    early, late = min(5, last), min(30, last)
    growth = at[late]["VmRSS"] - at[early]["VmRSS"]
    sec = Section(f"4. Worker memory over a study (default search space, {epochs} epochs a trial)")
    sec.rows += [
        Row(f"peak resident memory (VmHWM) after {last} trials", f"{at[last]['VmHWM']:.0f} MB"),
        Row(f"RSS after trial {early} / after trial {late}",
            f"{at[early]['VmRSS']:.0f} MB / {at[late]['VmRSS']:.0f} MB"),
        Row(f"growth from trial {early} to trial {late}", f"{growth:+.1f} MB",
            f"< {TARGETS['growth_mb']:g} MB", verdict(growth < TARGETS["growth_mb"])),
    ]  # fmt: skip
    sec.notes.append(
        f"every trial the worker ran counts ({last}: diverged ones fail and do not count towards "
        "search.n_trials). RSS after each (MB): "
        + ", ".join(f"{s['VmRSS']:.0f}" for s in samples[1:])
    )
    return sec
