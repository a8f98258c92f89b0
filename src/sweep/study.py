"""The Optuna study: create or resume it, run trials as MLflow child runs, summarise the sweep.

A worker asks for a trial only while finished + running trials are below `search.n_trials`, so
any number of workers (processes here, or machines on a shared storage) end on exactly that many
finished trials; a dead worker's trial is failed by heartbeat and its slot given back.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from sweep import console, interrupt, plots
from sweep.config import ConfigError, SweepError, first_line, flatten, mask_url
from sweep.registry import register_champion
from sweep.search import (
    apply_params,
    baseline_params,
    fingerprint,
    make_pruner,
    make_sampler,
    parse_space,
)
from sweep.tracking import (
    NullTracker,
    Tracker,
    check_reachable,
    enable_wal,
    make_tracker,
    warm_up,
    write_in_background,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MLFLOW_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}
PARENT_ATTR = "mlflow_parent_run_id"
RUN_ATTR = "mlflow_run_id"

optuna.logging.set_verbosity(optuna.logging.WARNING)
# We drive heartbeats ourselves around ask/tell (see `heartbeat`); these two notes are about that.
warnings.filterwarnings(
    "ignore",
    message=r".*(fail_stale_trials|heartbeat_interval|RetryHeartbeatStaleTrialCallback)",
    category=optuna.exceptions.ExperimentalWarning,
)
warnings.filterwarnings(
    "ignore", message="Heartbeat of storage is supposed to be used with Study.optimize"
)


@dataclass
class Sweep:
    """What every worker of one study shares."""

    cfg: DictConfig
    study: optuna.Study
    space: dict[str, BaseDistribution]
    tracker: Tracker | NullTracker
    parent_run_id: str | None
    overrides: Sequence[str] = ()


# --------------------------------------------------------------------------- storage and study


def make_storage(
    cfg: DictConfig, tracker: Tracker | NullTracker | None = None
) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats, so a trial whose worker died is failed and retried."""
    url = cfg.search.storage
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        enable_wal(url)
        kwargs = {"connect_args": {"timeout": 120}}
    else:
        kwargs = {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=cfg.search.heartbeat_interval,
            grace_period=cfg.search.grace_period,
            heartbeat_stale_trial_callback=_on_stale_trial(tracker),
        )
    except Exception as exc:  # sqlalchemy's errors name the engine, not the key
        raise ConfigError(f"search.storage={mask_url(url)}: {first_line(exc)}") from exc


def _on_stale_trial(tracker: Tracker | NullTracker | None):  # noqa: ANN202
    """Close a dead worker's MLflow run and enqueue its parameters again (once)."""
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        run_id = trial.user_attrs.get(RUN_ATTR)
        if tracker is not None and run_id:
            tracker.terminate(run_id, "KILLED", "worker lost: no heartbeat")
        retry(study, trial)

    return callback


def open_sweep(cfg: DictConfig, overrides: Sequence[str] = (), create: bool = True) -> Sweep:
    """Create the stores, the experiment, the study and its parent run once, or join them."""
    space = parse_space(cfg.search.space, cfg)
    check_storage(cfg.search.storage)
    if cfg.tracking.enabled:
        check_reachable(cfg.tracking.uri)
    with setup_lock(cfg):
        tracker = make_tracker(cfg.tracking)  # an MLflow client migrates a fresh SQLite store
        storage = make_storage(cfg, tracker)
        study, created = _create_or_load(cfg, storage, space, create)
        tracker.setup()
        parent = _parent_run(cfg, study, tracker, created)
    sweep = Sweep(cfg, study, space, tracker, parent, tuple(overrides))
    close_orphan_runs(sweep)
    return sweep


def check_storage(url: str) -> None:
    """Connect once to a server-backed storage, so an unreachable one fails before any write."""
    if url.startswith("sqlite:"):
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except Exception as exc:
        where = mask_url(url)
        raise ConfigError(f"search.storage={where} is unreachable: {first_line(exc)}") from exc
    finally:
        engine.dispose()


@contextlib.contextmanager
def setup_lock(cfg: DictConfig) -> Iterator[None]:
    """Serialise store creation among workers on this machine.

    Two processes creating a fresh SQLite store at once race on its schema migration; a file
    lock under paths.store makes the first one create it and the others wait, then join.
    """
    import fcntl

    os.makedirs(cfg.paths.store, exist_ok=True)  # absent when both stores are remote
    path = os.path.join(cfg.paths.store, ".setup.lock")
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def close_orphan_runs(sweep: Sweep) -> None:
    """Kill child runs left RUNNING by a dead worker whose trial is no longer running."""
    if sweep.parent_run_id is None:
        return
    trials = sweep.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    running = {t.number for t in trials}
    for run in sweep.tracker.child_runs(sweep.parent_run_id, status="RUNNING"):
        number = run.data.tags.get("sweep.trial")
        if number is not None and int(number) not in running:
            sweep.tracker.terminate(run.info.run_id, "KILLED", "worker lost before its trial ended")


def _create_or_load(
    cfg: DictConfig, storage: optuna.storages.RDBStorage, space: dict, create: bool
) -> tuple[optuna.Study, bool]:
    name = cfg.search.study_name
    kwargs = {
        "study_name": name,
        "storage": storage,
        "sampler": make_sampler(cfg.search.sampler),
        "pruner": make_pruner(cfg.search.pruner),
    }
    created = False
    try:
        study = optuna.load_study(**kwargs)
    except KeyError:
        if not create:
            raise ConfigError(
                f"search.study_name={name!r}: no such study in {mask_url(cfg.search.storage)}"
            ) from None
        try:
            study = optuna.create_study(direction=cfg.search.direction, **kwargs)
            created = True
        except optuna.exceptions.DuplicatedStudyError:  # another worker won the race
            study = optuna.load_study(**kwargs)
    if created:
        digest, fixed = fingerprint(cfg)
        study.set_user_attr("fingerprint", digest)
        study.set_user_attr("fixed_config", fixed)
        study.set_user_attr("n_trials", cfg.search.n_trials)
        if cfg.search.enqueue_baseline and space:
            study.enqueue_trial(baseline_params(cfg, space), user_attrs={"baseline": True})
    else:
        check_fingerprint(cfg, study)
        # Every worker seeds its sampler alike; a joiner would replay the creator's proposals.
        study.sampler.reseed_rng()
    return study, created


def check_fingerprint(cfg: DictConfig, study: optuna.Study) -> None:
    """Refuse to mix trials of a changed search space or fixed config into one study."""
    stored = study.user_attrs.get("fingerprint")
    for _ in range(50):  # the creating worker writes the attrs just after creating the study
        if stored:
            break
        time.sleep(0.2)
        stored = optuna.load_study(
            study_name=study.study_name, storage=study._storage
        ).user_attrs.get("fingerprint")
    digest, fixed = fingerprint(cfg)
    if stored is None or stored == digest:
        return
    old = flatten(study.user_attrs.get("fixed_config", {}))
    new = flatten(fixed)
    diffs = [
        f"{k}: {old.get(k, '<absent>')} -> {new.get(k, '<absent>')}"
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    ]
    shown = "; ".join(diffs[:4]) + (f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else "")
    raise ConfigError(
        f"study {study.study_name!r} was started with a different config ({shown}); "
        f"to keep both, start a new study with search.study_name=<new name>"
    )


def _parent_run(
    cfg: DictConfig, study: optuna.Study, tracker: Tracker | NullTracker, created: bool
) -> str | None:
    """The study's one parent run: made by the creator, found by every other worker."""
    if not tracker.enabled:
        return None
    run_id = study.user_attrs.get(PARENT_ATTR)
    if created and run_id is None:
        tags = {
            "sweep.study_name": study.study_name,
            "sweep.kind": "sweep",
            "sweep.storage": mask_url(cfg.search.storage),
        }
        parent = tracker.create_run(f"sweep-{study.study_name}", tags=tags)
        parent.log_params(flatten(cfg))
        parent.log_yaml(OmegaConf.to_container(cfg, resolve=True), "config.yaml")
        study.set_user_attr(PARENT_ATTR, parent.run_id)
        return parent.run_id
    deadline = time.monotonic() + 60
    while run_id is None and time.monotonic() < deadline:
        time.sleep(0.5)
        run_id = optuna.load_study(
            study_name=study.study_name, storage=study._storage
        ).user_attrs.get(PARENT_ATTR)
    if run_id is None:
        raise ConfigError(
            f"study {study.study_name!r} has no MLflow parent run; was it made with tracking=none?"
        )
    if tracker.status(run_id) != "RUNNING":
        tracker.reopen(run_id)
    return run_id


# --------------------------------------------------------------------------- the worker loop


def counts(study: optuna.Study) -> tuple[int, list[int]]:
    """Finished trials, and the numbers of the running ones."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    done = sum(t.state in FINISHED for t in trials)
    return done, sorted(t.number for t in trials if t.state == TrialState.RUNNING)


def next_trial(sweep: Sweep, poll: float = 1.0) -> optuna.Trial | None:
    """Ask for a trial while the target is not met; None once it is. Waits while others finish."""
    target = sweep.cfg.search.n_trials
    waiting_said = False
    while True:
        interrupt.check()
        optuna.storages.fail_stale_trials(sweep.study)
        done, running = counts(sweep.study)
        if done >= target:
            return None
        check_failures(sweep)
        if done + len(running) < target:
            trial = sweep.study.ask(sweep.space)
            # At once: a worker killed before its first beat would leave a trial never stale.
            beat(sweep.study, trial)
            done, running = counts(sweep.study)
            if trial.number in running[: max(target - done, 0)]:
                return trial
            # Another worker asked at the same moment and the quota is full: give this one back.
            trial.set_user_attr("fail_reason", "surplus: the target was reached by other workers")
            sweep.study.tell(trial, state=TrialState.FAIL)
        elif not waiting_said:
            console.say(f"waiting for {len(running)} running trial(s) to finish or go stale")
            waiting_said = True
        time.sleep(poll)


def check_failures(sweep: Sweep) -> None:
    """Stop a sweep whose trials keep failing instead of asking for new ones forever."""
    limit = sweep.cfg.search.max_failed_trials
    failed = [
        t
        for t in sweep.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if not str(t.user_attrs.get("fail_reason", "")).startswith(("surplus", "interrupted"))
    ]
    if limit and len(failed) >= limit:
        last = failed[-1].user_attrs.get("fail_reason", "no reason recorded")
        raise SweepError(
            f"study {sweep.study.study_name!r} has {len(failed)} failed trials "
            f"(search.max_failed_trials={limit}); last: {last}"
        )


def run_worker(sweep: Sweep, prefix: str = "") -> int:
    """Run trials until the study has `search.n_trials` finished ones; returns trials run here.

    Plots are written on a background thread while the next trial trains; all are on disk
    before this returns.
    """
    ran = 0
    if sweep.tracker.enabled and sweep.cfg.tracking.log_model:
        warm_up()
    write_in_background(True)
    try:
        while (trial := next_trial(sweep)) is not None:
            run_trial(sweep, trial, prefix)
            ran += 1
    finally:
        write_in_background(False)
    return ran


def run_trial(sweep: Sweep, trial: optuna.Trial, prefix: str = "") -> TrialState:
    """One trial as one MLflow child run; pruned, diverged and interrupted trials are marked."""
    from sweep.pipeline import execute
    from sweep.training import Diverged

    start = time.perf_counter()
    cfg = apply_params(sweep.cfg, trial.params)
    tags = {
        "sweep.study_name": sweep.study.study_name,
        "sweep.trial": trial.number,
        "sweep.kind": "trial",
    }
    if trial.user_attrs.get("baseline"):
        tags["sweep.baseline"] = "true"
    run = sweep.tracker.start_run(f"trial-{trial.number}", sweep.parent_run_id, tags)
    if run.run_id:
        trial.set_user_attr(RUN_ATTR, run.run_id)
    hooks = [
        console.epoch_counter(f"trial {trial.number}", cfg.trainer.epochs),
        interrupt.check,
        pruning_hook(trial),
    ]
    state, value, reason = TrialState.COMPLETE, None, None
    with heartbeat(sweep.study, trial):
        try:
            result = execute(cfg, run, sweep.overrides, hooks)
            value = result.val_mse
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except Diverged as exc:
            state, reason = TrialState.FAIL, str(exc)
        except KeyboardInterrupt:
            _close(sweep, trial, run, TrialState.FAIL, None, "interrupted", mlflow_status="KILLED")
            retry_later(sweep.study, trial)
            raise
        except BaseException as exc:
            _close(sweep, trial, run, TrialState.FAIL, None, first_line(exc))
            raise
    _close(sweep, trial, run, state, value, reason)
    _report(sweep, trial, state, value, time.perf_counter() - start, run.run_id, prefix, reason)
    return state


def _close(
    sweep: Sweep,
    trial: optuna.Trial,
    run: Any,
    state: TrialState,
    value: float | None,
    reason: str | None,
    mlflow_status: str | None = None,
) -> None:
    """Mark the trial in Optuna and its run in MLflow with the same outcome."""
    mlflow_status = mlflow_status or MLFLOW_STATUS.get(state, "FAILED")
    tags = {"sweep.state": state.name}
    if reason:
        tags["fail_reason"] = reason
        trial.set_user_attr("fail_reason", reason)
    try:
        run.end(mlflow_status, tags)  # the state tags ride with the last metrics: one write
    finally:
        if state == TrialState.COMPLETE:
            sweep.study.tell(trial, value)
        else:
            sweep.study.tell(trial, state=state)


def _report(
    sweep: Sweep,
    trial: optuna.Trial,
    state: TrialState,
    value: float | None,
    seconds: float,
    run_id: str | None,
    prefix: str,
    reason: str | None = None,
) -> None:
    done, _ = counts(sweep.study)
    best = best_trial(sweep.study)
    line = console.trial_line(
        done,
        sweep.cfg.search.n_trials,
        trial.number,
        state.name,
        value,
        (best.number, best.value) if best else None,
        trial.params,
        seconds,
        run_id,
        reason,
    )
    console.say(line, prefix)


def retry_later(study: optuna.Study, trial: optuna.Trial) -> None:
    """Enqueue an interrupted trial's parameters, so a resumed study still evaluates them."""
    attrs = {k: v for k, v in trial.user_attrs.items() if k == "baseline"}
    study.enqueue_trial(trial.params, user_attrs={**attrs, "retry_of": trial.number})


def pruning_hook(trial: optuna.Trial):  # noqa: ANN201
    """Report validation loss each epoch; raise TrialPruned when the pruner says so."""

    def hook(log: Any) -> None:
        if math.isfinite(log.val_loss):
            trial.report(log.val_loss, log.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {log.epoch}")

    return hook


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


# --------------------------------------------------------------------------- summary


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: t.value) if complete else None


def summarize(sweep: Sweep) -> dict[str, Any]:
    """Best trial and params, history and importance plots on the parent run; close it if done."""
    study = sweep.study
    best = best_trial(study)
    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    summary = {
        "study": study.study_name,
        "n_trials": sweep.cfg.search.n_trials,
        "states": {k: v for k, v in states.items() if v},
        "best_trial": best.number if best else None,
        "best_val_mse": best.value if best else None,
        "best_params": best.params if best else None,
        "best_run_id": best.user_attrs.get(RUN_ATTR) if best else None,
    }
    if sweep.parent_run_id is None:
        return summary
    parent = sweep.tracker.open_run(sweep.parent_run_id)
    parent.log_json(summary, "summary.json")
    tags = {"best_trial": summary["best_trial"], "best_run_id": summary["best_run_id"] or ""}
    tags.update({f"best.{k}": v for k, v in (summary["best_params"] or {}).items()})
    parent.set_tags(tags)
    if best:
        parent.log_metrics(
            {"best_val_loss": best.value, "n_finished": states["COMPLETE"] + states["PRUNED"]},
            step=len(trials),
        )
        parent.flush()
    _summary_plots(parent, study)
    register_champion(sweep.cfg, summary)
    done, running = counts(study)
    if done >= sweep.cfg.search.n_trials and not running:
        parent.end("FINISHED")
    return summary


def _summary_plots(parent: Any, study: optuna.Study) -> None:
    finished = [
        t
        for t in study.get_trials(deepcopy=False, states=FINISHED)
        if t.value is not None or t.intermediate_values
    ]
    if not finished:
        return
    values = [
        t.value if t.value is not None else list(t.intermediate_values.values())[-1]
        for t in finished
    ]
    fig = plots.history_figure(
        [t.number for t in finished], values, [t.state.name for t in finished]
    )
    parent.log_figure(fig, "plots/optimization_history.png")
    plots.close(fig)
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 3:
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):
            return
        parent.log_json(importances, "param_importances.json")
        fig = plots.importance_figure(importances)
        parent.log_figure(fig, "plots/param_importances.png")
        plots.close(fig)


def summary_text(summary: dict[str, Any]) -> str:
    """The closing lines of a sweep: where it stands and the best trial."""
    lines = [f"study {summary['study']}: {json.dumps(summary['states'])}"]
    if summary["best_trial"] is not None:
        lines.append(
            f"best: trial {summary['best_trial']}  val_mse={summary['best_val_mse']:.3e}  "
            f"{console.fmt_params(summary['best_params'])}  run {summary['best_run_id'] or '-'}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- several workers


def pin_worker(index: int, jobs: int) -> int | None:
    """Pin this process to its share of the cores; returns TensorFlow's thread count."""
    cores = sorted(os.sched_getaffinity(0))
    if jobs <= 1 or len(cores) < 2:
        return None
    share = max(1, len(cores) // jobs)
    mine = {cores[(index * share + i) % len(cores)] for i in range(share)}
    os.sched_setaffinity(0, mine)
    return share
