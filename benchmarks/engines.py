"""The engines part: one study run by `sweep` with JOBS=1 and JOBS=2, and by `launch --engine ray`
with 1 and 2 Ray workers: wall time from the shell, start-up, and trials per minute.

Why: `launch` must cost no more per trial than the workers `make sweep` starts itself; what Ray
adds is its start-up (a fresh local Ray here, `--address local`). Trials per minute are counted
over the trials' own span (first start to last end, from the study), so start-up shows in the
wall time only, and start-up (shell to the first trial's start) has its own figure. Each Ray
worker gets the cores a `sweep` worker of the same count gets (`--cpus`: the node's cores / N),
so one Ray worker trains on every core as JOBS=1 does. No target: it compares. Each run on fresh
SQLite stores, the pruner off so every run trains the same number of epochs.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import ROOT, Row, Section, clean_env, say, store_overrides

WHAT = "JOBS=1 and 2 against 1 and 2 Ray workers on the same study"
RUNS = (("JOBS=1", "sweep", 1), ("JOBS=2", "sweep", 2), ("1 Ray worker", "ray", 1))
RUNS += (("2 Ray workers", "ray", 2),)
# A fresh local Ray: no token written to ~/.ray, no usage report sent beyond this machine.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

Result = tuple[float, float, float]  # wall seconds, trials per minute, seconds to the first trial


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The study each run makes."""
    p.add_argument("--engines-trials", type=int, default=12, help="trials (engines part)")
    p.add_argument("--engines-epochs", type=int, default=20, help="epochs a trial (engines part)")


def run(args: argparse.Namespace, store: Path) -> Section:
    """Each run in turn on its own stores; a row saying why when Ray is not installed."""
    results: dict[str, Result | str] = {}
    for label, kind, n in RUNS:
        if kind == "ray" and importlib.util.find_spec("ray") is None:
            results[label] = "not run: pip install -e '.[ray]'"
            continue
        say(f"  engines part: {label}")
        results[label] = one(
            store / label.replace(" ", "-").replace("=", ""), kind, n,
            args.engines_trials, args.engines_epochs, args.set,
        )  # fmt: skip
    return engines_section(results, args.engines_trials, args.engines_epochs)


def command(kind: str, n: int, overrides: Sequence[str], cores: int = 2) -> list[str]:
    """`sweep` with n worker processes, or `launch` with n Ray tasks of cores/n CPUs each (as
    `sweep` pins its n workers) on a fresh local Ray."""
    if kind == "sweep":
        return [sys.executable, "-m", "sweep", "sweep", f"search.jobs={n}", *overrides]
    ray = ["launch", "--engine", "ray", "--address", "local", "--workers", str(n)]
    ray += ["--cpus", str(max(1, cores // n))]
    return [sys.executable, "-m", "sweep", *ray, *overrides]


def one(store: Path, kind: str, n: int, trials: int, epochs: int, extra: Sequence[str]) -> Result:
    """Wall seconds from the shell, finished trials per minute over their span, and seconds
    from the shell to the first trial's start."""
    import optuna

    overrides = ["experiment=tiny", "search/pruner=none", f"search.n_trials={trials}"]
    overrides += [f"trainer.epochs={epochs}", *store_overrides(store), *extra]
    cores = len(os.sched_getaffinity(0))
    started = datetime.datetime.now()  # Optuna's trial times are local and naive
    t0 = time.perf_counter()
    subprocess.run(
        command(kind, n, overrides, cores), cwd=ROOT, env=clean_env(**RAY_ENV), check=True,
        capture_output=True, timeout=1800,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{store}/optuna.db")
    done = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    first = min(t.datetime_start for t in done)
    span = max(t.datetime_complete for t in done) - first
    return wall, len(done) / span.total_seconds() * 60, (first - started).total_seconds()


def engines_section(results: dict[str, Result | str], trials: int, epochs: int) -> Section:
    """A row per run, and each Ray run's pace against the same number of `sweep` workers."""
    sec = Section(f"Engines: one study of {trials} trials x {epochs} epochs, JOBS against Ray")
    for label, r in results.items():
        value = r if isinstance(r, str) else (
            f"{r[0]:.1f} s wall ({r[2]:.1f} s to the first trial), {r[1]:.0f} trials/min"
        )  # fmt: skip
        sec.rows.append(Row(label, value))
    for n, ray_label in ((1, "1 Ray worker"), (2, "2 Ray workers")):
        ours, ray = results.get(f"JOBS={n}"), results.get(ray_label)
        if isinstance(ours, tuple) and isinstance(ray, tuple):
            sec.rows.append(
                Row(
                    f"{ray_label} / JOBS={n}",
                    f"pace {ray[1] / ours[1]:.2f}x, wall {ray[0] / ours[0]:.2f}x "
                    f"(start-up {ray[2] - ours[2]:+.1f} s)",
                )
            )
    sec.notes.append(
        "experiment=tiny, pruner off, fresh SQLite stores each run; trials/min over the trials' "
        "span (first start to last end); Ray's wall time and start-up include starting a local "
        "Ray; each Ray worker has the node's cores / N (`--cpus`)"
    )
    return sec
