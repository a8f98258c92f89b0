"""The Optuna study: create it or join it (with its MLflow parent run), and ask where it stands.

Creation happens once, under a lock, after every check that needs no write; worker.py runs the
trials and summary.py writes the sweep's summary.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import functools
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from sweep import budget, interrupt, warmstart
from sweep.config import flatten, mask_url, sqlite_path
from sweep.errors import NO_SPACE, ConfigError, SweepError, first_line
from sweep.objects import build
from sweep.search import Space, baseline_params, fingerprint, objectives, parse_space
from sweep.tracking import (
    NullTracker,
    Tracker,
    check_reachable,
    enable_wal,
    make_tracker,
)

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
# Optuna's note (with its SQL) when a read of trials fails and it tries a slower query: on a
# server storage that is a dropped connection, which `_again_if_dropped` reads again quietly.
logging.getLogger("optuna.storages._rdb.storage").addFilter(
    lambda record: "Falling back to a slower alternative" not in record.getMessage()
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
        storage = PatientStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=cfg.search.heartbeat_interval,
            grace_period=cfg.search.grace_period,
            heartbeat_stale_trial_callback=_on_stale_trial(tracker),
        )
    except Exception as exc:  # sqlalchemy's errors name the engine, not the key
        raise ConfigError(f"search.storage={mask_url(url)}: {first_line(exc)}") from exc
    if not url.startswith("sqlite:"):
        sqlalchemy.event.listen(storage.engine, "do_connect", _connect_patiently)
    return storage


RECONNECT_SECONDS = 300  # how long a worker waits for a restarted database server


def _connect_patiently(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    """Connect, retrying with backoff while the database restarts (1, 2, 4 .. 15 s, ~5 min).

    With pool_pre_ping, every call after a restart reconnects here first, so a worker waits
    for its storage instead of failing its trial with Optuna's StorageInternalError.
    """
    deadline, delay = time.monotonic() + RECONNECT_SECONDS, 1.0
    while True:
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 15.0)


ATTEMPTS = 3  # a statement whose connection dropped, run again (reconnecting patiently)


def _again_if_dropped(call: Any) -> Any:
    """`call`, run again when its connection dropped mid-statement (the server stopped or
    restarted): it reconnects through `_connect_patiently` and runs on what is there then.

    Only for what can run twice: a read, or a write that sets a key to a value (an attribute,
    an epoch's reported loss, the heartbeat's now()). Not for a write that adds a row or moves
    a trial's state (`ask`, `enqueue_trial`, `tell`): its commit may have landed before the
    connection dropped, and running it again would make a trial twice or claim one twice.
    (Optuna itself runs a trial's creation again after any storage error, meant for deadlocks;
    docs/faults.md says what that can leave.)
    """

    @functools.wraps(call)
    def patient(self: optuna.storages.RDBStorage, *args: Any, **kwargs: Any) -> Any:
        attempt = 1
        while True:
            try:
                return call(self, *args, **kwargs)
            except optuna.exceptions.StorageInternalError as exc:
                if not _dropped(exc) or attempt == ATTEMPTS:
                    raise
                attempt += 1

    return patient


def _dropped(exc: BaseException) -> bool:
    """Whether SQLAlchemy saw the connection drop somewhere in the error's chain (Optuna runs
    some queries again itself, so the drop can sit under a later PendingRollbackError)."""
    seen: BaseException | None = exc
    for _ in range(20):  # __context__ can loop
        if seen is None:
            return False
        if getattr(seen, "connection_invalidated", False):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class PatientStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose repeatable statements survive a connection dropped mid-way."""


REPEATABLE = (
    # reads
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_trial_param",
    "get_trial",
    "_get_trials",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
    # writes that set a key to a value
    "set_study_user_attr",
    "set_study_system_attr",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "set_trial_intermediate_value",
    "record_heartbeat",
)
for _name in REPEATABLE:
    setattr(PatientStorage, _name, _again_if_dropped(getattr(optuna.storages.RDBStorage, _name)))


class StorageLost(SweepError):
    """A statement of the study's storage failed mid-way (its server stopped, the connection
    dropped) and could not be run again (see `_again_if_dropped`)."""


@contextlib.contextmanager
def storage_kept(url: str) -> Iterator[None]:
    """Optuna's StorageInternalError (a traceback saying "invalid data") as one line that says
    what happened and what the next start does."""
    try:
        yield
    except optuna.exceptions.StorageInternalError as exc:
        cause = first_line(exc.__cause__ or exc)
        raise StorageLost(
            f"the study's storage {mask_url(url)} failed mid-statement ({cause}); run the same "
            "command once it answers: a trial left running is failed by its missing heartbeat "
            "and run again"
        ) from exc


def storage_answers(url: str) -> bool:
    """Whether the study's database takes a connection now (5 s, no patience): a stopped sweep
    reads it only then, instead of waiting minutes to say where it stands."""
    if url.startswith("sqlite:"):
        return True
    engine = sqlalchemy.create_engine(
        url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect():
            return True
    except sqlalchemy.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


LOST_BEFORE_BEAT = "worker lost before its first heartbeat"


def fail_stale(study: optuna.Study) -> None:
    """Fail (and retry) the trials whose worker is gone: Optuna's heartbeat check, plus a trial
    that never recorded a heartbeat within the grace period of its start.

    Optuna skips the latter, and left alone one holds a slot of the target for ever (the last
    worker waits for it). A worker beats right after it asks, so such a trial's worker died in
    between, or its creation was a statement lost with the database (docs/faults.md). The start
    is the asking host's clock against this one's: hosts of one study keep NTP time.
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
        storage.set_trial_user_attr(
            trial_id, "fail_reason", "worker lost before its first heartbeat"
        )
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL) and callback:
                callback(study, copy.deepcopy(storage.get_trial(trial_id)))


def _on_stale_trial(tracker: Tracker | NullTracker | None):  # noqa: ANN202
    """Close a dead worker's MLflow run and enqueue its parameters again (once).

    A run closed FINISHED is marked KILLED too: its worker died (or lost its storage) before
    the trial's end was stored, so the retry, not this run, is the trial's record.
    """
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        run_id = trial.user_attrs.get(RUN_ATTR)
        if tracker is not None and run_id:
            tracker.terminate(run_id, "KILLED", "worker lost: no heartbeat", over=("FINISHED",))
        retry(study, trial)

    return callback


def open_sweep(cfg: DictConfig, overrides: Sequence[str] = ()) -> Sweep:
    """Create the stores, the experiment, the study and its parent run once, or join them."""
    space = parse_space(cfg.search.space, cfg)
    check_sampler_on_shared_storage(cfg)
    check_storage(cfg.search.storage)
    if cfg.tracking.enabled:
        check_reachable(cfg.tracking.uri)
    with setup_lock(cfg):
        tracker = make_tracker(cfg.tracking)  # an MLflow client migrates a fresh SQLite store
        storage = make_storage(cfg, tracker)
        study, created = _create_or_load(cfg, storage, space)
        tracker.setup()
        parent = _parent_run(cfg, study, tracker, created, space)
    sweep = Sweep(cfg, study, space, tracker, parent, tuple(overrides))
    close_orphan_runs(sweep)
    return sweep


# Tables only MLflow's store has (Optuna's has `studies`, `trials`): both keep `alembic_version`.
MLFLOW_TABLES = {"experiments", "runs", "metrics"}


def wait_for_storage(url: str, seconds: float = RECONNECT_SECONDS) -> None:
    """Wait (backing off 1, 2, 4 .. 15 s) until the study's database answers, for a worker
    joining a study another one has just opened: unreachable now is an outage, not a typo."""
    deadline, delay = time.monotonic() + seconds, 1.0
    while not storage_answers(url) and time.monotonic() + delay < deadline:
        interrupt.check()
        time.sleep(delay)
        delay = min(delay * 2, 15.0)


def check_storage(url: str) -> None:
    """Connect once before any write: an unreachable storage, or MLflow's database, is one line.

    Both stores are SQLAlchemy URLs, so pointing the study at the tracking database is an easy
    slip; Optuna would then fail on the shared `alembic_version` table with a schema message.
    """
    import sqlalchemy

    if url.startswith("sqlite:"):
        if not Path(sqlite_path(url)).is_file():
            return  # made fresh by the study
        engine = sqlalchemy.create_engine(url)
    else:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
    where = mask_url(url)
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    except Exception as exc:
        raise ConfigError(f"search.storage={where} is unreachable: {first_line(exc)}") from exc
    finally:
        engine.dispose()
    own = "e.g. `createdb sweep_optuna`, or the default sqlite:///<store>/optuna.db"
    if tables >= MLFLOW_TABLES and "studies" not in tables:  # a likely slip: both are SQL URLs
        raise ConfigError(
            f"search.storage={where} is MLflow's tracking database; use its own ({own})"
        )


def check_sampler_on_shared_storage(cfg: DictConfig) -> None:
    """CMA-ES keeps its state as pickles in the study's attributes; on a database other roles'
    holders can write, loading them would run their code (docs/security.md)."""
    pickles = str(cfg.search.sampler._target_).endswith("CmaEsSampler")
    if pickles and not cfg.search.storage.startswith("sqlite:"):
        raise ConfigError(
            "search.sampler=cmaes unpickles what the shared storage holds (anyone with its role "
            "could run code on every worker); use search/sampler=tpe, or cmaes on a local sqlite"
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


@contextlib.contextmanager
def setup_lock(cfg: DictConfig) -> Iterator[None]:
    """Serialise store creation among workers: on this machine, and on a PostgreSQL storage.

    Two processes creating fresh stores at once race on their schema migrations; the first one
    to take the lock creates the stores, the study and its parent run, the others then join.
    """
    with _file_lock(cfg.paths.store), _database_lock(cfg.search.storage):
        yield


@contextlib.contextmanager
def _file_lock(folder: str) -> Iterator[None]:
    """A lock file under paths.store: workers of this machine, whatever their storage."""
    import fcntl

    os.makedirs(folder, exist_ok=True)  # absent when both stores are remote
    with open(os.path.join(folder, ".setup.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


SETUP_LOCK_KEY = 0x5EEB  # pg_advisory_lock's key for the setup of any study in that database


@contextlib.contextmanager
def _database_lock(url: str) -> Iterator[None]:
    """A PostgreSQL advisory lock: workers on different hosts share the database, not a disk.

    Without it, N workers on a fresh database race in Optuna's CREATE TABLEs (PostgreSQL's
    catalog is not safe for concurrent CREATE ... IF NOT EXISTS). Held on its own connection;
    released with it if the worker dies.
    """
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as con:
            con.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": SETUP_LOCK_KEY})
            try:
                yield
            finally:
                con.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": SETUP_LOCK_KEY})
    finally:
        engine.dispose()


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
            sweep.tracker.terminate(
                run.info.run_id, "KILLED", why or "worker lost before its trial ended"
            )


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
            "sweep.storage": mask_url(cfg.search.storage),
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
    """Finished trials (not counting warm-start copies), and the numbers of the running ones."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    done = sum(t.state in FINISHED and budget.COPIED_ATTR not in t.user_attrs for t in trials)
    return done, sorted(t.number for t in trials if t.state == TrialState.RUNNING)


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
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ConfigError(
            f"no study {name!r} in {mask_url(storage)}; studies there: {', '.join(names) or 'none'}"
        ) from None
