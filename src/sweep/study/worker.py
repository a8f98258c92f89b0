"""The worker loop: ask for trials while the study needs them, run each as an MLflow child run.

A worker asks for a trial only while finished + running trials are below `search.n_trials`, so
any number of workers (processes here, or machines on a shared storage) end on exactly that many
finished trials; heartbeats let a dead worker's trial be failed and its slot given back.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from sweep.config.space import apply_params, sample
from sweep.core import console, interrupt
from sweep.core.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    DiskFull,
    Diverged,
    SweepError,
    first_line,
    no_space,
    reason,
)
from sweep.core.secrets import mask_text
from sweep.study import budget, proxy
from sweep.study.progress import Lines, Silent, View
from sweep.study.pruning import Pruning
from sweep.study.storage import StorageLost, check_storage, make_storage, storage_kept
from sweep.study.study import MLFLOW_STATUS, RUN_ATTR, Sweep, counts, fail_stale, failed_trials
from sweep.tracking import Run, TrackingUnavailable, tracked_run, warm_up, write_in_background

if TYPE_CHECKING:
    from sweep.train.loop import TrainResult


def next_trial(sweep: Sweep, poll: float = 1.0, view: View | None = None) -> optuna.Trial | None:
    """Ask for a trial while the target is not met and no budget is spent; None once either is.

    Waits while other workers' trials finish (they may still meet the target), looking again
    every `poll` seconds: polling faster made a waiting worker ask for a freed slot in the same
    instant as the worker that freed it more often, a "surplus" trial given back each time.
    """
    target = sweep.cfg.search.n_trials
    waiting_said = False
    while True:
        interrupt.check()
        fail_stale(sweep.study)
        done, running = counts(sweep.study)
        if done >= target or budget.spent(sweep.study):
            return None
        check_failures(sweep)
        if done + len(running) < target:
            trial = sweep.study.ask()
            sample(trial, sweep.space)
            # At once: a worker killed before its first beat would leave a trial never stale.
            beat(sweep.study, trial)
            done, running = counts(sweep.study)
            if trial.number in running[: max(target - done, 0)]:
                return trial
            # Another worker asked at the same moment and the quota is full: give this one back.
            trial.set_user_attr("fail_reason", "surplus: the target was reached by other workers")
            sweep.study.tell(trial, state=TrialState.FAIL)
        elif not waiting_said:
            (view or Lines()).note(
                f"waiting for {len(running)} running trial(s) to finish or go stale"
            )
            waiting_said = True
        time.sleep(poll)


def target_met(cfg: DictConfig) -> str | None:
    """Why a worker joining now would have nothing to ask for, or None (trials to run, or no
    study yet).

    Looked up before the stores are set up, with neither MLflow nor TensorFlow: a replacement
    that starts after the end (a Ray task's retry, a requeued SLURM job, a restarted pod) exits
    at once, instead of reopening the parent run to write its summary again. No table is made
    here: a fresh database is set up under the setup lock, by `open_sweep`.
    """
    url, name = cfg.search.storage, cfg.search.study_name
    if not check_storage(url):  # unreachable: the one line of opening; no tables: no study yet
        return None
    if proxy.is_grpc(url):
        storage = make_storage(cfg)  # no stale callback: this look fails and retries nothing
    else:
        storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
    try:
        study = optuna.load_study(
            study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
        )
        done, target = counts(study)[0], cfg.search.n_trials
        spent = None if done >= target else budget.spent(study)
    except KeyError:  # no such study yet
        return None
    finally:
        if proxy.is_grpc(url):
            storage.close()
        else:
            storage.engine.dispose()
    if done < target and not spent:
        return None
    why = f"stopped early by its budget: {spent}" if spent else f"{done}/{target} trials finished"
    return f"study {name!r}: {why}; nothing for this worker to do"


def check_failures(sweep: Sweep) -> None:
    """Stop a sweep whose trials keep failing instead of asking for new ones forever."""
    limit = sweep.cfg.search.max_failed_trials
    failed = failed_trials(sweep.study)
    if limit and len(failed) >= limit:
        last = failed[-1].user_attrs.get("fail_reason", "no reason recorded")
        raise SweepError(
            f"study {sweep.study.study_name!r} has {len(failed)} failed trials "
            f"(search.max_failed_trials={limit}); last: {last}"
        )


def run_worker(sweep: Sweep, view: View | None = None) -> int:
    """Run trials until the study has `search.n_trials` finished ones; returns trials run here.

    Plots are written on a background thread while the trial logs its model; all are on disk
    before this returns.
    """
    ran, view = 0, view or Lines()
    if sweep.tracker.enabled and sweep.cfg.tracking.log_model:
        warm_up()
    write_in_background(True)
    try:
        with storage_kept(sweep.cfg.search.storage):
            while (trial := next_trial(sweep, view=view)) is not None:
                run_trial(sweep, trial, view)
                ran += 1
    except TrackingUnavailable:
        write_in_background(False, drop=True)
        raise
    finally:
        write_in_background(False)
    return ran


def run_trial(sweep: Sweep, trial: optuna.Trial, view: View | None = None) -> TrialState:
    """One trial as one MLflow child run; pruned, diverged and interrupted trials are marked.

    The run closes first (its status and `sweep.state` tag match the trial's), then the trial
    is told: a finished trial in Optuna always has its complete record in MLflow. The heartbeat
    spans the whole run, so a trial waiting on MLflow's retries is not taken for a dead one.
    A trial whose record cannot be completed (Ctrl-C, the tracking server gone) is failed and
    queued again; one failed as stale by another worker meanwhile is closed and left to the
    retry that worker queued (`taken`); after a statement the storage lost, nothing more is
    written to it: the trial stays RUNNING, and its missing heartbeat fails and retries it.
    """
    from sweep.run import execute

    start = time.perf_counter()
    cfg = apply_params(sweep.cfg, trial.params)
    view = view or Lines()
    prune = Pruning(sweep.study, trial, sweep.cfg.search.pruner)
    hooks = [interrupt.check, prune, *view.hooks(trial.number, cfg.trainer.epochs)]
    outcome: Outcome | None = None
    try:
        with (
            heartbeat(sweep.study, trial),
            tracked_run(*_run_spec(sweep, trial), failed_tags={"sweep.state": "FAIL"}) as run,
            storage_kept(sweep.cfg.search.storage),  # innermost: the run's reason names the fault
        ):
            fault("run-created")
            if run.run_id:
                trial.set_user_attr(RUN_ATTR, run.run_id)
            result = execute(cfg, run, sweep.overrides, hooks)
            prune.flush()  # the trial's values stored before it is told
            outcome = Outcome.of(result, [name for name, _ in sweep.objectives])
            run.close_as(MLFLOW_STATUS[outcome.state], {"sweep.state": outcome.state.name})
        fault("run-closed")
    except Diverged as exc:
        outcome = Outcome(TrialState.FAIL, reason=str(exc))
    except optuna.exceptions.UpdateFinishedTrialError:
        outcome = None  # another worker failed it as stale: `taken` below
    except KeyboardInterrupt:
        give_back(sweep.study, trial, "interrupted")
        raise
    except TrackingUnavailable as exc:
        give_back(sweep.study, trial, str(exc))
        raise TrackingUnavailable(f"{exc}; trial {trial.number} is queued again") from exc
    except StorageLost:
        raise
    except BaseException as exc:
        if no_space(exc):
            raise out_of_space(sweep, trial, exc) from exc
        tell(sweep.study, trial, Outcome(TrialState.FAIL, reason=first_line(exc)))
        raise
    if outcome is None or not tell(sweep.study, trial, outcome):
        outcome = taken(sweep, run)
    seconds = time.perf_counter() - start
    view.trial_done(sweep, trial, outcome, seconds, run.run_id)
    return outcome.state


FAULT_ENV = "SWEEP_FAULT"


def fault(point: str) -> None:
    """Die here at once, as a SIGKILL would, when $SWEEP_FAULT names `point`: the fault tests'
    way to stop a worker exactly between two writes of different stores (tests/e2e/test_windows.py).
    """
    if os.environ.get(FAULT_ENV) == point:
        os._exit(137)


def _run_spec(sweep: Sweep, trial: optuna.Trial) -> tuple[Any, str, str | None, dict[str, Any]]:
    """tracked_run's arguments for a trial: the tracker, its name, its parent and tags."""
    tags = {
        "sweep.study_name": sweep.study.study_name,
        "sweep.trial": trial.number,
        "sweep.kind": "trial",
    }
    if trial.user_attrs.get("baseline"):
        tags["sweep.baseline"] = "true"
    return sweep.tracker, f"trial-{trial.number}", sweep.parent_run_id, tags


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, as Optuna is told: state, objective value, and why if not complete."""

    state: TrialState
    value: float | list[float] | None = None  # a list for a study of several objectives
    reason: str | None = None  # why it failed (stored on trial and run)
    note: str | None = None  # why training stopped early (pruned), shown on its line

    @classmethod
    def of(cls, result: TrainResult, names: Sequence[str]) -> Outcome:
        """The trial's state, and its value(s): each objective's final metric (e.g. val_mse)."""
        if result.stopped:  # pruned: its run still gets the model, plots and final metrics
            return cls(TrialState.PRUNED, note=result.stopped)
        values = [result.metrics[name] for name in names]
        return cls(TrialState.COMPLETE, value=values[0] if len(values) == 1 else values)


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> bool:
    """The trial's end in Optuna, with its failure reason as a user attribute.

    False when it had ended already: another worker failed it as stale (and queued its retry).
    """
    try:
        # A FAIL always says why: one without a reason is the stale check's (`retry_pending`).
        if outcome.reason or outcome.state == TrialState.FAIL:
            trial.set_user_attr("fail_reason", mask_text(outcome.reason or "no reason given"))
        if outcome.state == TrialState.COMPLETE:
            study.tell(trial, outcome.value)
        else:
            study.tell(trial, state=outcome.state)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):  # "Cannot tell a FAIL trial"
        if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            raise
        return False
    return True


def out_of_space(sweep: Sweep, trial: optuna.Trial, exc: BaseException) -> DiskFull:
    """A full disk fails the trial and stops the sweep: the next trial would fail alike. The
    parameters are not to blame, so they are queued again for when there is room.

    The study's own store may be full too; then the trial stays RUNNING and the next start
    fails it by its heartbeat (and retries it) instead.
    """
    why = reason(exc)
    with contextlib.suppress(Exception):
        give_back(sweep.study, trial, why)
    return DiskFull(
        f"trial {trial.number}: {why}; free some space and run the same command again "
        "(the trial is retried)"
    )


def give_back(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Fail a trial whose record cannot be completed and enqueue its parameters, so a resumed
    study still evaluates them; not twice if a stale check already failed and queued it."""
    if tell(study, trial, Outcome(TrialState.FAIL, reason=reason)):
        attrs = {k: v for k, v in trial.user_attrs.items() if k == "baseline"}
        study.enqueue_trial(trial.params, user_attrs={**attrs, "retry_of": trial.number})


def taken(sweep: Sweep, run: Run) -> Outcome:
    """A trial another worker failed as stale while it ran here: no heartbeat reached the storage
    for `search.grace_period` (it was unreachable that long). That worker queued its retry; this
    one closes the run with why (its record, like its trial, is superseded) and goes on."""
    grace = sweep.cfg.search.grace_period
    reason = (
        f"failed as stale by another worker: no heartbeat reached the storage for "
        f"search.grace_period={grace} s; its retry is queued"
    )
    run.end("KILLED", {"sweep.state": TrialState.FAIL.name, "fail_reason": reason})
    return Outcome(TrialState.FAIL, reason=reason)


def heartbeat_interval(study: optuna.Study) -> int:
    """Seconds between heartbeats of this study's storage; 0 when it keeps none."""
    storage = study._storage
    return (storage.get_heartbeat_interval() or 0) if hasattr(storage, "record_heartbeat") else 0


def beat(study: optuna.Study, trial: optuna.Trial) -> None:
    """Record one heartbeat for a running trial, if the storage keeps them."""
    if heartbeat_interval(study):
        study._storage.record_heartbeat(trial._trial_id)


class heartbeat:  # noqa: N801 - used as a context manager, reads like one
    """Record the trial's heartbeat from a thread while it runs (ask/tell has no built-in one)."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial) -> None:
        self.storage = study._storage
        self.trial_id = trial._trial_id
        self.interval = heartbeat_interval(study)
        self.stop = threading.Event()

    def __enter__(self) -> heartbeat:
        if self.interval:
            self.storage.record_heartbeat(self.trial_id)
            threading.Thread(target=self._beat, daemon=True).start()
        return self

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a missed beat is retried next interval
                self.storage.record_heartbeat(self.trial_id)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()


class Helpers:
    """Workers 1 .. jobs-1 of a sweep, spawned before the study is opened: they import
    TensorFlow and MLflow while this process (worker 0) opens the stores, and wait for `go()`
    before touching them, so a sweep that fails to open leaves them nothing to do.

    Use as a context manager: leaving it before `go()` stops them; `join()` waits for them.
    """

    def __init__(self, cfg: DictConfig, overrides: Sequence[str], jobs: int, live: bool) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.jobs = max(jobs, 1)
        # One worker needs no event (a multiprocessing one starts Python's resource tracker).
        self.ready = ctx.Event() if self.jobs > 1 else threading.Event()
        data = OmegaConf.to_container(cfg, resolve=True)
        self.procs = [
            ctx.Process(
                target=_worker_process, args=(data, list(overrides), i, self.jobs, live, self.ready)
            )
            for i in range(1, self.jobs)
        ]
        for p in self.procs:
            p.start()

    def __enter__(self) -> Helpers:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.ready.is_set():  # the sweep never opened: nothing of theirs to close
            for p in self.procs:
                p.kill()
                p.join()

    def go(self) -> None:
        self.ready.set()

    def stop(self) -> None:
        """Pass a stop request on (SIGINT): each worker closes its trial and exits."""
        for p in self.procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)

    def join(self, view: View | None = None) -> None:
        """Wait for them, forwarding a stop request (Ctrl-C, or SIGTERM sent to this process
        alone, as a scheduler does); one error line if any of them failed."""
        forwarded = False
        while any(p.is_alive() for p in self.procs):
            time.sleep(0.2)
            if view is not None:
                view.poll()
            if interrupt.requested() and not forwarded:
                self.stop()
                forwarded = True
        interrupt.check()
        bad = [p.exitcode for p in self.procs if p.exitcode not in (0, None)]
        if bad:
            raise SweepError(
                f"{len(bad)} worker(s) failed (exit codes {bad}); see their output above"
            )


def run_workers(sweep: Sweep, helpers: Helpers, view: View | None = None) -> None:
    """Run the study here as worker 0 while `helpers` (started earlier) run it beside."""
    view = view or Lines()
    helpers.go()
    if not helpers.procs:
        run_worker(sweep, view)
        return
    cores = os.sched_getaffinity(0)
    threads = pin_worker(0, helpers.jobs)
    if threads and sweep.cfg.trainer.threads is None:
        sweep.cfg.trainer.threads = threads
    try:
        run_worker(sweep, Lines("[w0] ") if type(view) is Lines else view)
    except KeyboardInterrupt:
        helpers.stop()
        helpers.join(view)
        raise
    except BaseException:
        helpers.stop()
        raise
    finally:
        os.sched_setaffinity(0, cores)  # the summary (and a caller's later work) use them all
    helpers.join(view)


def _worker_process(
    data: dict, overrides: list[str], index: int, jobs: int, live: bool, ready: Any
) -> None:
    """Entry of one spawned worker: pinned to its cores, warmed up, then on the study."""
    from sweep.study.storage import wait_for_storage
    from sweep.study.study import open_sweep

    interrupt.install()
    cfg = OmegaConf.create(data)
    threads = pin_worker(index, jobs)
    if threads and cfg.trainer.threads is None:
        cfg.trainer.threads = threads
    warm_up()  # TensorFlow and MLflow's model code, while worker 0 opens the stores
    while not ready.wait(0.2):
        if interrupt.requested():
            sys.exit(EXIT_INTERRUPTED)
    try:
        view = Silent() if live else Lines(f"[w{index}] ")
        wait_for_storage(cfg.search.storage)  # worker 0 opened it: a restart, if it is down
        run_worker(open_sweep(cfg, overrides), view)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # e.g. the storage stopping mid-open: one line, as worker 0 says it
        console.error(f"[w{index}] {first_line(exc)}")  # its text may be the study's
        sys.exit(exc.exit_code if isinstance(exc, SweepError) else EXIT_FAILED)


def pin_worker(index: int, jobs: int) -> int | None:
    """Pin this process to its share of the cores; returns TensorFlow's thread count."""
    cores = sorted(os.sched_getaffinity(0))
    if jobs <= 1 or len(cores) < 2:
        return None
    share = max(1, len(cores) // jobs)
    mine = {cores[(index * share + i) % len(cores)] for i in range(share)}
    os.sched_setaffinity(0, mine)
    return share
