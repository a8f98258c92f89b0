"""Workers as Ray tasks: `python -m sweep launch --engine ray --address auto --workers N`.

Each task runs one worker in its own Ray worker process (not a subprocess of it: Ray leaves a
killed task's child processes running, ray #42861). Ray replaces a task whose process died
(`max_retries`), and the study fails that worker's trial by heartbeat and retries it; a
replacement that starts after the target is met finds nothing to ask for and returns at once.
Ctrl-C or SIGTERM here becomes `ray.cancel(force=False)`: Ray interrupts each task's main thread
as SIGINT would, so every worker gives its running trial back and returns 130.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweep.core import console, interrupt
from sweep.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, SweepError, first_line

POLL = 0.5  # seconds between looks at the tasks and at a stop request


def launch(
    cfg: DictConfig,
    overrides: Sequence[str],
    address: str,
    workers: int,
    cpus: float = 1,
    retries: int = 3,
) -> int:
    """Run `workers` workers as Ray tasks on the cluster at `address`; 0 once the study is done.

    Raises SweepError (exit 1) when a worker failed past its retries, KeyboardInterrupt (130)
    once a stop request has been passed on and every task has given its trial back.
    """
    import ray

    data = OmegaConf.to_container(cfg, resolve=True)
    ray.init(address=address, log_to_driver=True)
    interrupt.install()  # ray.init put its own SIGTERM handler (exit 1) over the runner's
    try:
        # max_calls=1: a fresh process per worker (TensorFlow, MLflow, signal handlers).
        task = ray.remote(num_cpus=cpus, max_retries=retries, max_calls=1)(_worker_task)
        task = task.options(name="sweep-worker")
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        refs = [task.remote(data, list(overrides), nice) for _ in range(workers)]
        codes = _wait(refs)
    finally:
        ray.shutdown()
    if EXIT_INTERRUPTED in codes:
        raise KeyboardInterrupt
    failed = [c for c in codes if c != EXIT_OK]
    if failed:
        raise SweepError(f"{len(failed)} of {workers} Ray worker(s) failed (exit codes {failed})")
    return EXIT_OK


def _wait(refs: list[Any]) -> list[int]:
    """Each task's exit code, passing one stop request on as `ray.cancel(force=False)`."""
    import ray

    pending, cancelled = list(refs), False
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL)
        if interrupt.requested() and not cancelled:
            console.say(f"stopping {len(pending)} Ray worker(s): each gives its trial back")
            for ref in pending:
                ray.cancel(ref, force=False)
            cancelled = True
    return [_code(ref) for ref in refs]


def _code(ref: Any) -> int:
    """A task's exit code; a task Ray gave up on (retries spent, cancelled before it ran) as
    the code the runner would give it."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return EXIT_INTERRUPTED
    except ray.exceptions.RayError as exc:
        console.error(f"Ray worker lost past its retries: {first_line(exc)}")
        return EXIT_FAILED


def _worker_task(data: dict, overrides: list[str], nice: int = 0) -> int:
    """One worker in this Ray worker process, as `python -m sweep worker` runs it, at the
    launcher's priority `nice`.

    `trainer.threads` follows the CPUs Ray gave the task: TensorFlow's default (every core of
    the node) would oversubscribe a node running several tasks.
    """
    import ray

    from sweep import api

    interrupt.install()  # ray.cancel(force=False) arrives as SIGINT: a flag, checked per epoch
    renice(nice)
    cfg = OmegaConf.create(data)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    if cfg.trainer.threads is None and cpus:
        cfg.trainer.threads = max(1, int(cpus))
    try:
        api.sweep(*overrides, cfg=cfg, jobs=1, owner=False)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SweepError as exc:
        console.error(first_line(exc))
        return exc.exit_code
    return EXIT_OK


def renice(target: int) -> None:
    """Run at `target` niceness, not Ray's: Ray starts its workers at `worker_niceness` 15, so
    beside any process at 0 they get a few percent of a core (measured here: beside two busy
    processes, 2 Ray workers took 401 s for 4 tiny trials, 33 s at 0), and a heartbeat starved
    past the grace period would fail a live trial. Niceness is per thread on Linux: set here,
    before TensorFlow and the heartbeat start theirs, every thread they make inherits it.
    Lowering it needs CAP_SYS_NICE; without, one note says how to start the nodes instead.
    """
    now = os.getpriority(os.PRIO_PROCESS, 0)
    if now <= target:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, target)
    except PermissionError:
        console.say(
            f"note: this Ray worker runs at niceness {now} (Ray's worker_niceness), behind any "
            f"other work on the node; start the nodes with `RAY_worker_niceness={target} ray start`"
        )
