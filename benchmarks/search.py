"""The search part: search quality of TPE, random, GP and CMA-ES on the tutorial's space and
budget: the best validation MSE after 30 trials (median over 3 sampler seeds) and the first
trial below 1e-4.

Why: the sampler is one config choice (`search/sampler=...`); this shows what each buys on our
own problem, seed by seed. No target: it compares them.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import Row, Section, open_bench_sweep, say

WHAT = "TPE, random, GP and CMA-ES side by side"
SEARCH_SAMPLERS = ("tpe", "random", "gp", "cmaes")
SEARCH_GOAL = 1e-4


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The search part's study size and sampler seeds."""
    p.add_argument(
        "--search-trials", type=int, default=30, help="trials per study in the search part"
    )
    p.add_argument("--search-seeds", type=int, default=3, help="sampler seeds in the search part")


def run(args: argparse.Namespace, store: Path) -> Section:
    """The search part at the command line's sizes."""
    runs = bench_search(store / "search", args.search_seeds, args.search_trials, args.set)
    return search_section(runs, args.search_trials, args.search_seeds)


def search_values(store: Path, sampler: str, seed: int, trials: int, extra: Sequence[str]) -> list:
    """Each complete trial's validation MSE in trial order (None for pruned/failed), one study
    of the default space with tracking=none, run by the in-process worker."""
    from optuna.trial import TrialState

    from sweep.study.worker import run_worker

    sweep = open_bench_sweep(
        store / f"{sampler}-{seed}",
        "tracking=none",
        f"search/sampler={sampler}",
        f"search.sampler.seed={seed}",
        f"search.n_trials={trials}",
        "search.max_failed_trials=0",  # random's lr up to 0.3 diverges often; keep counting
        *extra,
    )
    run_worker(sweep)
    return [
        t.value if t.state == TrialState.COMPLETE else None
        for t in sweep.study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ]


def first_below(values: Sequence[float | None], goal: float) -> int | None:
    """The 1-based trial at which a study first reaches a value below goal, or None."""
    return next((i + 1 for i, v in enumerate(values) if v is not None and v < goal), None)


def bench_search(
    store: Path, seeds: int, trials: int, extra: Sequence[str]
) -> dict[str, list[list] | str]:
    """Per sampler, each seed's values in trial order; a sampler that cannot run says why."""
    import importlib.util

    out: dict[str, list[list] | str] = {}
    for sampler in SEARCH_SAMPLERS:
        if sampler == "gp" and importlib.util.find_spec("torch") is None:
            out[sampler] = "not run: GPSampler needs torch (pip install 'sweep[gp]')"
            continue
        out[sampler] = []
        for seed in range(seeds):
            say(f"  {sampler} seed {seed}")
            out[sampler].append(search_values(store, sampler, seed, trials, extra))
    return out


def search_section(r: dict[str, list[list] | str], trials: int, seeds: int) -> Section:
    """Median best-after-N and median first trial below the goal, one row per sampler."""
    sec = Section(f"Search quality: best validation MSE after {trials} trials")
    for sampler, runs in r.items():
        if isinstance(runs, str):
            sec.rows.append(Row(sampler, runs))
            continue
        bests = [min((v for v in vals if v is not None), default=math.inf) for vals in runs]
        firsts = [first_below(vals, SEARCH_GOAL) for vals in runs]
        reached = [f for f in firsts if f is not None]
        value = (
            f"{statistics.median(bests):.2e} (seeds: {', '.join(f'{b:.1e}' for b in bests)}); "
            f"first < {SEARCH_GOAL:.0e} at trial "
            + ", ".join(str(f) if f else "never" for f in firsts)
            + (f" (median {statistics.median(reached):g})" if len(reached) == len(firsts) else "")
        )
        sec.rows.append(Row(sampler, value))
    sec.notes.append(
        f"median over {seeds} sampler seeds; the default space (depth, width, activation, "
        "learning rate), 50 epochs, median pruner; trial 1 is the tutorial's configuration; "
        "diverged trials fail and do not count towards the trials"
    )
    return sec
