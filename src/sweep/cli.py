"""Thin Hydra entry points: compose the config, check it, call one task function.

`python -m sweep <command> [hydra overrides]`; `make <command> ARGS="..."` calls the same thing.
Heavy imports (TensorFlow, MLflow) happen inside the tasks, after the config is checked, so a
config mistake comes back in about a second as one line.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from sweep import interrupt
from sweep.config import mask_text, prepare
from sweep.errors import ConfigError, SweepError, first_line

CONF_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "conf")
EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 130


def fail(message: str, code: int = EXIT_CONFIG) -> None:
    """One line on stderr and a non-zero exit; SWEEP_TRACEBACK=1 shows the whole story."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def task_overrides() -> list[str]:
    """The command-line overrides that produced this config (recorded with every run)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def guarded(task: Callable[[DictConfig, list[str]], int | None]) -> Callable[[DictConfig], None]:
    """Check the config, run the task, and turn known failures into one line and an exit code."""

    def main(raw: DictConfig) -> None:
        interrupt.install()
        try:
            cfg = prepare(raw)
            code = task(cfg, task_overrides())
        except (ConfigError, SweepError) as exc:
            if os.environ.get("SWEEP_TRACEBACK"):
                raise
            fail(str(exc), EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILED)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        except Exception:
            # A bug, not a user mistake: show the traceback, but never a URL's password (Hydra's
            # own handler would print the raw overrides).
            print(mask_text(traceback.format_exc()), file=sys.stderr, end="")
            sys.exit(EXIT_FAILED)
        sys.exit(code or 0)

    return main


def run_baseline(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """One run of the configured model (the tutorial's, by default), logged as its own run."""
    from sweep import console
    from sweep.pipeline import execute
    from sweep.tracking import make_tracker

    tracker = make_tracker(cfg.tracking)
    tracker.setup()
    run = tracker.start_run("baseline", tags={"sweep.kind": "single"})
    status = "FAILED"
    try:
        hooks = [console.epoch_counter("baseline", cfg.trainer.epochs), interrupt.check]
        result = execute(cfg, run, overrides, hooks)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        run.end(status)
    h = result.history
    console.say(
        f"epoch 1 loss {h[0].train_loss:.4f}, epoch {len(h)} loss {h[-1].train_loss:.4f}; "
        f"train MSE {result.train_mse:.4f} (tutorial: 0.0034), val MSE {result.val_mse:.4f}, "
        f"test MSE {result.test_mse:.4f}; {result.seconds:.1f}s"
    )
    if run.run_id:
        console.say(f"run {run.run_id}  (rerun: make rerun RUN_ID={run.run_id})")
    return 0


def run_sweep(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """Create or resume the study, run `search.jobs` workers on it, print and log the summary."""
    from sweep import console
    from sweep.study import open_sweep
    from sweep.summary import summarize, summary_text
    from sweep.worker import run_worker

    sweep = open_sweep(cfg, overrides)
    _announce(sweep)
    try:
        if cfg.search.jobs == 1:
            run_worker(sweep)
        else:
            _run_processes(cfg, overrides, cfg.search.jobs)
    except KeyboardInterrupt:
        _stopped(sweep, "interrupted")
        raise
    except SweepError:
        _stopped(sweep, "stopped")
        raise
    console.say(summary_text(summarize(sweep)))
    return 0


def _stopped(sweep: Any, why: str) -> None:
    """Say where an unfinished study stands and how to continue it; mark its parent run."""
    from sweep import console
    from sweep.study import counts
    from sweep.summary import summarize, summary_text

    console.say(summary_text(summarize(sweep)))
    if sweep.parent_run_id:
        sweep.tracker.terminate(sweep.parent_run_id, "KILLED", why)
    done, _ = counts(sweep.study)
    console.say(
        f"{why} at {done}/{sweep.cfg.search.n_trials} finished trials; "
        "run the same command again to continue the study"
    )


def run_join(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """A worker that joins (or starts) the study on a shared storage and runs trials until done."""
    from sweep import console
    from sweep.study import open_sweep
    from sweep.summary import summarize, summary_text
    from sweep.worker import run_worker

    sweep = open_sweep(cfg, overrides)
    _announce(sweep)
    run_worker(sweep)
    console.say(summary_text(summarize(sweep)))
    return 0


def _announce(sweep: Any) -> int:
    from sweep import console
    from sweep.config import mask_url
    from sweep.study import counts

    done, running = counts(sweep.study)
    where = mask_url(sweep.cfg.search.storage)
    verb = "resuming" if done or running else "starting"
    console.say(
        f"{verb} study {sweep.study.study_name!r} in {where}: "
        f"{done}/{sweep.cfg.search.n_trials} finished"
        + (f", parent run {sweep.parent_run_id}" if sweep.parent_run_id else "")
    )
    return done


def _run_processes(cfg: DictConfig, overrides: Sequence[str], jobs: int) -> None:
    """Start `jobs` worker processes on the same study and parent run; wait for all of them."""
    ctx = multiprocessing.get_context("spawn")
    data = OmegaConf.to_container(cfg, resolve=True)
    procs = [
        ctx.Process(target=_worker_process, args=(data, list(overrides), i, jobs))
        for i in range(jobs)
    ]
    for p in procs:
        p.start()
    forwarded = False
    while any(p.is_alive() for p in procs):
        time.sleep(0.2)
        if interrupt.requested() and not forwarded:  # e.g. SIGTERM sent to this process alone
            for p in procs:
                if p.is_alive():
                    os.kill(p.pid, signal.SIGINT)
            forwarded = True
    interrupt.check()
    bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if bad:
        raise ConfigError(f"{len(bad)} worker(s) failed (exit codes {bad}); see their output above")


def _worker_process(data: dict, overrides: list[str], index: int, jobs: int) -> None:
    """Entry of one spawned worker: pinned to its cores, its own TensorFlow threads."""
    from sweep.study import open_sweep
    from sweep.worker import pin_worker, run_worker

    interrupt.install()
    cfg = OmegaConf.create(data)
    threads = pin_worker(index, jobs)
    if threads and cfg.trainer.threads is None:
        cfg.trainer.threads = threads
    try:
        run_worker(open_sweep(cfg, overrides), prefix=f"[w{index}] ")
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except (ConfigError, SweepError) as exc:
        print(f"error: [w{index}] {first_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILED)


def hydra_entry(task: Callable[[DictConfig, list[str]], int | None]) -> Callable[[], None]:
    """Wrap a task as a `@hydra.main` function reading conf/config.yaml."""
    return hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(guarded(task))


def run_report(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """A self-contained HTML report of study `search.study_name`, logged to its parent run."""
    from sweep.report import run_report as report

    return report(cfg, overrides)


# Commands that compose conf/ with Hydra: task(cfg, overrides) -> exit code.
COMMANDS: dict[str, Callable[[DictConfig, list[str]], int | None]] = {
    "baseline": run_baseline,
    "sweep": run_sweep,
    "worker": run_join,
    "report": run_report,
}


def lazy(module: str, function: str) -> Callable[[list[str]], int]:
    """A plain command whose module (MLflow, TensorFlow...) is imported only when it runs."""

    def command(argv: list[str]) -> int:
        return getattr(importlib.import_module(f"sweep.{module}"), function)(argv)

    command.__doc__ = f"`python -m sweep`: sweep.{module}.{function}(argv)"
    return command


# Commands that do not compose conf/ (they read a past run's record, or serve a store):
# command(argv) -> exit code, with their own argparse.
PLAIN_COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "server": lazy("server", "serve"),  # an MLflow tracking server for many machines
    "rerun": lazy("replay", "rerun_command"),  # a past run again from its MLflow record alone
    "robust": lazy("replay", "robust_command"),  # a study's best trials again with new seeds
    "ui": lazy("ui", "command"),  # mlflow ui over the project's store
    "bench": lazy("bench", "command"),  # the speed targets measured on this machine
    "predict": lazy("registry", "command"),  # the registered champion beside sin(x)
}
