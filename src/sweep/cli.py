"""The Hydra commands: each wires a checked config to the functions that do the work.

`sweep.runner` composes the config, checks it (before TensorFlow or MLflow is imported), calls
one of these with `(cfg, overrides)` and turns what they raise into one line and an exit code.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from sweep import interrupt
from sweep.errors import EXIT_OK, SweepError


def baseline(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """One run of the configured model (the tutorial's, by default), logged as its own run."""
    from sweep import console
    from sweep.pipeline import execute
    from sweep.tracking import make_tracker, tracked_run

    tracker = make_tracker(cfg.tracking)
    tracker.setup()
    hooks = [console.epoch_counter("baseline", cfg.trainer.epochs), interrupt.check]
    with tracked_run(tracker, "baseline", tags={"sweep.kind": "single"}) as run:
        result = execute(cfg, run, overrides, hooks)
    console.say(console.result_line(result, cfg.data._target_ == "sweep.data.sine"))
    if run.run_id:
        console.say(f"run {run.run_id}  (rerun: make rerun RUN_ID={run.run_id})")
    return EXIT_OK


def sweep(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """Create or resume the study and run `search.jobs` workers on it; this machine owns it."""
    return _run_study(cfg, overrides, cfg.search.jobs, owner=True)


def worker(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """One worker that joins (or starts) a shared study and runs trials until it is done."""
    return _run_study(cfg, overrides, 1, owner=False)


def _run_study(cfg: DictConfig, overrides: Sequence[str], jobs: int, owner: bool) -> int:
    """Open the study, run workers on it, print and log the summary.

    A study stopped early (Ctrl-C, too many failures) says where it stands; its owner also
    closes the parent run, while a joining worker leaves it to the others.
    """
    from sweep import console
    from sweep.study import announce, open_sweep
    from sweep.summary import stopped, summarize, summary_text
    from sweep.worker import run_workers

    study = open_sweep(cfg, overrides)
    console.say(announce(study))
    try:
        run_workers(study, jobs)
    except (KeyboardInterrupt, SweepError) as exc:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped"
        console.say(stopped(study, why, close_parent=owner))
        raise
    console.say(summary_text(summarize(study)))
    return EXIT_OK
