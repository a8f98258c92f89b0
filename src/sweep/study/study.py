"""The Optuna study: create it or join it (with its MLflow parent run), and ask where it stands.

Creation happens once, under a lock, after every check that needs no write; storage.py keeps
the database connection patient, worker.py runs the trials and summary.py writes the summary.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import functools
import socket
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweep.config.checks import flatten
from sweep.config.space import Space, baseline_params, fingerprint, objectives, parse_space
from sweep.core.errors import NO_SPACE, ConfigError
from sweep.core.objects import build, resolve, targets
from sweep.core.secrets import mask_url
from sweep.core.sqlite import sqlite_path
from sweep.study import budget, proxy, warmstart
from sweep.study.pruning import check_direction
from sweep.study.storage import check_storage, make_storage, setup_lock
from sweep.tracking import NullTracker, Tracker, check_reachable, make_tracker

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MLFLOW_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}
PARENT_ATTR = "mlflow_parent_run_id"
RUN_ATTR = "mlflow_run_id"
HOST_ATTR = "sqlite_host"

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
    space: Space
    tracker: Tracker | NullTracker
    parent_run_id: str | None
    overrides: Sequence[str] = ()

    @functools.cached_property
    def objectives(self) -> list[tuple[str, str]]:
        """(metric, direction) of each objective, read from the config once for the study."""
        return objectives(self.cfg)

    @property
    def objective(self) -> str:
        """The first objective's metric: the one a single-objective view ranks by."""
        return self.objectives[0][0]


# --------------------------------------------------------------------------- the study


LOST_BEFORE_BEAT = "worker lost before its first heartbeat"
MAX_RETRY = 1  # a stale trial's parameters are run again once
RETRY_PENDING_SECONDS = 30


def fail_stale(study: optuna.Study) -> None:
    """Fail (and retry) the trials whose worker is gone: Optuna's heartbeat check, plus a trial
    that never recorded a heartbeat within the grace period of its start.

    Optuna skips the latter, and left alone one holds a slot of the target for ever (the last
    worker waits for it). A worker beats right after it asks, so such a trial's worker died in
    between, or its creation was a statement lost with the database (docs/faults.md). The start
    is the asking host's clock against this one's: hosts of one study keep NTP time. A trial of a
    worker through a gRPC proxy has no heartbeat row, only the beat attribute (proxy.py); through
    the proxy, its client's own check (`proxy.BeatingProxy`) does all of this.
    """
    optuna.storages.fail_stale_trials(study)
    storage = study._storage
    rdb = getattr(storage, "_backend", storage)
    grace = getattr(rdb, "grace_period", None)
    if not isinstance(rdb, optuna.storages.RDBStorage) or not rdb.heartbeat_interval or not grace:
        return
    now = datetime.datetime.now()
    old = {
        t._trial_id: t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.datetime_start and (now - t.datetime_start).total_seconds() > grace
    }
    if not old:
        return
    from optuna.storages._rdb import models  # no public call lists a trial's heartbeat
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session) as session:
        beaten = {
            row.trial_id
            for row in session.query(models.TrialHeartbeatModel.trial_id).filter(
                models.TrialHeartbeatModel.trial_id.in_(list(old))
            )
        }
    callback = rdb.get_heartbeat_stale_trial_callback()
    for trial_id in set(old) - beaten:
        trial = old[trial_id]
        if proxy.last_beat(trial) is not None:  # its worker beats through a gRPC proxy
            if not proxy.beat_is_stale(trial, grace):
                continue
        else:
            storage.set_trial_user_attr(trial_id, "fail_reason", LOST_BEFORE_BEAT)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL) and callback:
                callback(study, copy.deepcopy(storage.get_trial(trial_id)))


def study_storage(
    cfg: DictConfig, tracker: Tracker | NullTracker | None = None
) -> optuna.storages.RDBStorage:
    """The study's storage as every worker opens it: a trial whose worker is gone is failed by
    its heartbeat, its run closed through `tracker`, and its parameters queued again."""
    return make_storage(cfg, _on_stale_trial(tracker))


LOST = "worker lost: no heartbeat"
# What a run whose trial was failed carries, whatever its worker wrote before it died.
SUPERSEDED = {"sweep.state": TrialState.FAIL.name}


def _on_stale_trial(tracker: Tracker | NullTracker | None):  # noqa: ANN202
    """Close a dead worker's MLflow run and enqueue its parameters again (once).

    A run closed FINISHED (or KILLED as pruned) is marked KILLED with `sweep.state=FAIL` too:
    its worker died (or lost its storage) before the trial's end was stored, so the retry, not
    this run, is the trial's record.
    """
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        # The retry first: until it is queued the failed trial holds its slot (`counts`), and a
        # slow or stopped tracking server must not keep it from being queued at all.
        retry(study, proxy.without_beat(trial))
        if tracker is not None:
            for run_id in trial_run_ids(study, trial, tracker):
                tracker.terminate(run_id, "KILLED", LOST, ("FINISHED", "KILLED"), SUPERSEDED)

    return callback


def trial_run_ids(
    study: optuna.Study, trial: FrozenTrial, tracker: Tracker | NullTracker
) -> list[str]:
    """The trial's MLflow runs: the one named on it, and any found by their tags under the
    parent. A worker that died between creating its run and naming it on the trial left one
    only the tags find (a retry also inherits its original's name for a while)."""
    named = [trial.user_attrs[RUN_ATTR]] if trial.user_attrs.get(RUN_ATTR) else []
    parent = study.user_attrs.get(PARENT_ATTR)
    if not parent or not tracker.enabled:
        return named
    runs = tracker.child_runs(parent, tags={"sweep.trial": trial.number, "sweep.kind": "trial"})
    return list(dict.fromkeys(named + [run.info.run_id for run in runs]))


def open_sweep(cfg: DictConfig, overrides: Sequence[str] = ()) -> Sweep:
    """Create the stores, the experiment, the study and its parent run once, or join them."""
    space = parse_space(cfg.search.space, cfg)
    check_sampler_on_shared_storage(cfg)
    directions = [StudyDirection[d.upper()] for _, d in objectives(cfg)]
    check_direction(build(cfg.search.pruner, "search.pruner"), directions)  # before any store
    check_storage(cfg.search.storage)
    if cfg.tracking.enabled:
        check_reachable(cfg.tracking.uri)
    with setup_lock(cfg):
        tracker = make_tracker(cfg.tracking)  # an MLflow client migrates a fresh SQLite store
        storage = study_storage(cfg, tracker)
        study, created = _create_or_load(cfg, storage, space)
        tracker.setup()
        parent = _parent_run(cfg, study, tracker, created, space)
    sweep = Sweep(cfg, study, space, tracker, parent, tuple(overrides))
    close_orphan_runs(sweep)
    return sweep


def check_sampler_on_shared_storage(cfg: DictConfig) -> None:
    """CMA-ES keeps its state as pickles in the study's attributes; on a database other roles'
    holders can write, loading them would run their code (docs/security.md). Looked for
    anywhere under `search`, by class: nested (PartialFixedSampler's `base_sampler`, another
    sampler's `independent_sampler`) it unpickles all the same. In Optuna 5 it is the only
    sampler or pruner that pickles (`optuna/samplers/_cmaes.py` is their one `import pickle`)."""
    if cfg.search.storage.startswith("sqlite:"):
        return
    for key, target in targets(cfg.search, "search"):
        found = resolve(key, target)
        if isinstance(found, type) and issubclass(found, optuna.samplers.CmaEsSampler):
            raise ConfigError(
                f"{key.removesuffix('._target_')}=cmaes unpickles what the shared storage holds "
                "(anyone with its role could run code on every worker); use "
                "search/sampler=tpe, or cmaes on a local sqlite"
            )


def check_one_host(url: str, study: optuna.Study, created: bool) -> None:
    """A SQLite study stays on the machine that made it: SQLite's locks (and WAL) do not hold
    over NFS, so workers of several hosts on one file corrupt it."""
    if not url.startswith("sqlite:"):
        return
    host = socket.gethostname()
    if created:
        study.set_user_attr(HOST_ATTR, host)
    elif study.user_attrs.get(HOST_ATTR, host) != host:
        raise ConfigError(
            f"study {study.study_name!r} lives in a SQLite file made on "
            f"{study.user_attrs[HOST_ATTR]!r}; workers on other machines need a shared server "
            "storage (search=shared, docs/distributed.md), not one SQLite file over NFS"
        )


def close_orphan_runs(sweep: Sweep) -> None:
    """Kill child runs left RUNNING whose trial is no longer running: by a dead worker, or by
    one whose tracking server stopped answering (its trial's fail_reason says so)."""
    if sweep.parent_run_id is None:
        return
    trials = {t.number: t for t in sweep.study.get_trials(deepcopy=False)}
    for run in sweep.tracker.child_runs(sweep.parent_run_id, status="RUNNING"):
        number = run.data.tags.get("sweep.trial")
        trial = trials.get(int(number)) if number is not None else None
        if number is not None and (trial is None or trial.state != TrialState.RUNNING):
            why = trial.user_attrs.get("fail_reason") if trial else None
            why = why or "worker lost before its trial ended"
            sweep.tracker.terminate(run.info.run_id, "KILLED", why, tags=SUPERSEDED)


def _create_or_load(
    cfg: DictConfig, storage: optuna.storages.RDBStorage, space: Space
) -> tuple[optuna.Study, bool]:
    """Load the study by name, or create it (the worker that wins the race does)."""
    name = cfg.search.study_name
    kwargs = {
        "study_name": name,
        "storage": storage,
        "sampler": build(cfg.search.sampler, "search.sampler"),
        "pruner": build(cfg.search.pruner, "search.pruner"),
    }
    created = False
    try:
        study = optuna.load_study(**kwargs)
    except KeyError:
        source = warmstart.source_study(cfg, storage)  # checked before anything is written
        try:
            directions = [direction for _, direction in objectives(cfg)]
            study = optuna.create_study(directions=directions, **kwargs)
            created = True
        except optuna.exceptions.DuplicatedStudyError:  # another worker won the race
            study = optuna.load_study(**kwargs)
    name_objectives(study, [name for name, _ in objectives(cfg)])
    check_one_host(cfg.search.storage, study, created)
    if created:
        digest, fixed = fingerprint(cfg)
        study.set_user_attr("fingerprint", digest)
        study.set_user_attr("fixed_config", fixed)
        budget.stamp(study, cfg)
        if source is not None:
            warmstart.copy_trials(source, study, space)
        if cfg.search.enqueue_baseline and space:
            study.enqueue_trial(baseline_params(cfg, space), user_attrs={"baseline": True})
    else:
        check_fingerprint(cfg, study)
        # Every worker seeds its sampler alike; a joiner would replay the creator's proposals.
        study.sampler.reseed_rng()
    return study, created


def name_objectives(study: optuna.Study, names: Sequence[str]) -> None:
    """Name the objectives on the study, so optuna-dashboard shows `val_mse`, not "Objective 0".

    Also names those of a study made before this existed; a study that has names keeps them.
    """
    if study.metric_names is not None:
        return
    with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(names))


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
    cfg: DictConfig,
    study: optuna.Study,
    tracker: Tracker | NullTracker,
    created: bool,
    space: Space,
) -> str | None:
    """The study's one parent run: made by the creator, found by every other worker."""
    if not tracker.enabled:
        return None
    run_id = study.user_attrs.get(PARENT_ATTR)
    if created and run_id is None:
        tags = {
            "sweep.study_name": study.study_name,
            "sweep.kind": "sweep",
            "sweep.study.storage": mask_url(cfg.search.storage),
        }
        parent = tracker.start_run(f"sweep-{study.study_name}", tags=tags)
        # Named on the study at once: a write failing below (a full disk) must not leave a
        # study that no later start can find its parent run for.
        study.set_user_attr(PARENT_ATTR, parent.run_id)
        # The UI's columns: every key a trial may sample, though a branch's are absent in some.
        names, directions = zip(*objectives(cfg), strict=True)
        parent.log_params(
            {
                **flatten(cfg),
                "sweep.params": ",".join(space.flat()),
                "sweep.objectives": ",".join(names),
                "sweep.directions": ",".join(directions),
            }
        )
        parent.log_yaml(OmegaConf.to_container(cfg, resolve=True), "config.yaml")
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


# --------------------------------------------------------------------------- queries


def announce(sweep: Sweep) -> str:
    """Where the study stands as a worker starts on it."""
    done, running = counts(sweep.study)
    verb = "resuming" if done or running else "starting"
    lines = [
        f"{verb} study {sweep.study.study_name!r} in {mask_url(sweep.cfg.search.storage)}: "
        f"{done}/{sweep.cfg.search.n_trials} finished"
        + (f", parent run {sweep.parent_run_id}" if sweep.parent_run_id else "")
    ]
    warm = sweep.study.user_attrs.get(warmstart.WARM_ATTR)
    if warm and not done:
        lines.append(warmstart.describe(warm))
    return "\n".join(lines)


def counts(study: optuna.Study) -> tuple[int, list[int]]:
    """Finished trials (not counting warm-start copies), and the numbers of the trials holding
    a slot of the target: the running ones, and any failed as stale whose retry is not queued
    yet (`retry_pending`)."""
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in FINISHED and budget.COPIED_ATTR not in t.user_attrs for t in trials)
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    return done, sorted(running + retry_pending(trials))


def retry_pending(trials: Sequence[FrozenTrial], now: datetime.datetime | None = None) -> list[int]:
    """Trials failed as stale in the last `RETRY_PENDING_SECONDS` whose retry is not queued yet.

    The stale check fails a trial, then queues its retry: two writes. A worker asking in between
    took the freed slot for a fresh trial, and once the target was met the retry stayed WAITING
    for ever (seen in 1 of 5 runs of the proxy kill test). Counted as running, the failed trial
    keeps its slot until its retry is there for `ask` to take first. Bounded in time: a worker
    that died between the two writes holds the slot no longer than that.
    """
    now = now or datetime.datetime.now()
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    return [
        t.number
        for t in trials
        if t.state == TrialState.FAIL
        and t.user_attrs.get("fail_reason", LOST_BEFORE_BEAT) == LOST_BEFORE_BEAT
        and len(t.system_attrs.get("retry_history", ())) < MAX_RETRY
        and t.number not in retried
        and t.datetime_complete is not None
        and (now - t.datetime_complete).total_seconds() < RETRY_PENDING_SECONDS
    ]


# Why a trial failed when the fault was not its own: given back, interrupted, or its record
# lost with the tracking server (tracking.TrackingUnavailable), or that found the disk full;
# each is retried or never ran.
NOT_ITS_OWN = ("surplus", "interrupted", "tracking server", NO_SPACE, LOST_BEFORE_BEAT)


def failed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that failed on their own (`NOT_ITS_OWN` aside): what search.max_failed_trials
    counts."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if not str(t.user_attrs.get("fail_reason", "")).startswith(NOT_ITS_OWN)
    ]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial with the best objective value (lowest, or highest when maximised)."""
    ranked = ranked_trials(study, 1, required=False)
    return ranked[0] if ranked else None


def ranked_trials(study: optuna.Study, top: int, required: bool = True) -> list[FrozenTrial]:
    """The `top` complete trials, best on the first objective first (ties by trial number)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete and required:
        raise ConfigError(f"study {study.study_name!r} has no completed trial yet")
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(complete, key=lambda t: (sign * t.values[0], t.number))[:top]


def load_existing(storage: str, name: str) -> optuna.Study:
    """A study that must already exist; one line (and no file made) when it does not."""
    if storage.startswith("sqlite:") and not Path(sqlite_path(storage)).is_file():
        raise ConfigError(f"no study {name!r}: no Optuna storage at {sqlite_path(storage)}")
    opened = proxy.reader(storage) if proxy.is_grpc(storage) else storage
    try:
        return optuna.load_study(study_name=name, storage=opened)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
        raise ConfigError(
            f"no study {name!r} in {mask_url(storage)}; studies there: {', '.join(names) or 'none'}"
        ) from None
