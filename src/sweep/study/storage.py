"""The study's database: connections that wait out a restart, statements run again where that
is safe, the locks around creating the stores, and the checks that make a bad URL one line.

study.py creates and joins studies on it; nothing here knows about trials or MLflow runs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from omegaconf import DictConfig
from optuna.trial import FrozenTrial

from sweep.config.stores import grpc_address
from sweep.core import interrupt
from sweep.core.errors import ConfigError, SweepError, first_line
from sweep.core.secrets import mask_url
from sweep.core.sqlite import enable_wal, sqlite_path
from sweep.study import proxy

# Optuna's note (with its SQL) when a read of trials fails and it tries a slower query: on a
# server storage that is a dropped connection, which `again_if_dropped` reads again quietly.
logging.getLogger("optuna.storages._rdb.storage").addFilter(
    lambda record: "Falling back to a slower alternative" not in record.getMessage()
)


def make_storage(
    cfg: DictConfig, on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None
) -> optuna.storages.BaseStorage:
    """RDB storage (or the gRPC proxy's client) with heartbeats, so a trial whose worker died is
    failed and, through `on_stale` (study.py's: its run closed, its parameters queued again),
    retried."""
    url = cfg.search.storage
    interval, grace = cfg.search.heartbeat_interval, cfg.search.grace_period
    if proxy.is_grpc(url):
        return proxy.connect(url, interval, grace, on_stale)
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
            heartbeat_interval=interval,
            grace_period=grace,
            heartbeat_stale_trial_callback=on_stale,
        )
    except Exception as exc:  # sqlalchemy's errors name the engine, not the key
        raise ConfigError(f"search.storage={mask_url(url)}: {first_line(exc)}") from exc
    if not url.startswith("sqlite:"):
        sqlalchemy.event.listen(storage.engine, "do_connect", _connect_patiently)
    return storage


def proxy_backend(url: str, connections: int) -> optuna.storages.BaseStorage:
    """The database behind `sweep proxy`: patient as a worker's, at most `connections` open
    whatever the number of workers, and cached (Optuna's advice for its proxy). No heartbeat of
    its own: workers beat through it (proxy.py)."""
    kwargs = {"pool_pre_ping": True, "pool_size": connections, "max_overflow": 0}
    try:
        storage = PatientStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # sqlalchemy's errors name the engine, not the option
        raise ConfigError(f"--storage {mask_url(url)}: {first_line(exc)}") from exc
    sqlalchemy.event.listen(storage.engine, "do_connect", _connect_patiently)
    return optuna.storages.get_storage(storage)  # wrapped in Optuna's trial cache


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


def again_if_dropped(call: Any) -> Any:
    """`call`, run again when its connection dropped mid-statement (the server stopped or
    restarted): it reconnects through `_connect_patiently` and runs on what is there then.

    Only for what can run twice: a read, or a write that sets a key to a value (an attribute,
    an epoch's reported loss or a batch of them (`pruning.write_intermediate`: one transaction,
    so all of it or none landed), the heartbeat's now()). Not for a write that adds a row or moves
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
    setattr(PatientStorage, _name, again_if_dropped(getattr(optuna.storages.RDBStorage, _name)))
_record_in_table = PatientStorage.record_heartbeat


def _record_both(self: PatientStorage, trial_id: int) -> None:
    """Optuna's heartbeat row, and the beat attribute workers through a gRPC proxy read
    (proxy.py): a study may have workers of both kinds, each failing the others' lost trials."""
    _record_in_table(self, trial_id)
    proxy.record_beat(self, trial_id)


PatientStorage.record_heartbeat = _record_both


class StorageLost(SweepError):
    """A statement of the study's storage failed mid-way (its server stopped, the connection
    dropped) and could not be run again (see `again_if_dropped`)."""


@contextlib.contextmanager
def storage_kept(url: str) -> Iterator[None]:
    """Optuna's StorageInternalError (a traceback saying "invalid data") as one line that says
    what happened and what the next start does."""
    try:
        yield
    except optuna.exceptions.StorageInternalError as exc:
        raise _lost(url, first_line(exc.__cause__ or exc)) from exc
    except Exception as exc:
        if not _proxy_lost(exc):
            raise
        details = getattr(exc, "details", lambda: None)()  # gRPC's one-line cause
        raise _lost(url, first_line(details or exc)) from exc


def _lost(url: str, cause: str) -> StorageLost:
    return StorageLost(
        f"the study's storage {mask_url(url)} failed mid-statement ({cause}); run the same "
        "command once it answers: a trial left running is failed by its missing heartbeat "
        "and run again"
    )


def _proxy_lost(exc: BaseException) -> bool:
    """Whether a gRPC proxy stopped answering (gRPC's UNAVAILABLE), as opposed to a bug."""
    import grpc

    return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE


def storage_answers(url: str) -> bool:
    """Whether the study's database takes a connection now (5 s, no patience): a stopped sweep
    reads it only then, instead of waiting minutes to say where it stands."""
    if url.startswith("sqlite:"):
        return True
    if proxy.is_grpc(url):
        return proxy.answers(url)
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


def check_storage(url: str) -> bool:
    """Connect once before any write: an unreachable storage, or MLflow's database, is one line.
    Returns whether the database holds Optuna's tables already (behind a proxy: the proxy's).

    Both stores are SQLAlchemy URLs, so pointing the study at the tracking database is an easy
    slip; Optuna would then fail on the shared `alembic_version` table with a schema message.
    """
    if proxy.is_grpc(url):
        grpc_address(url)  # the proxy checks its database; make_storage waits for the proxy
        return True
    if url.startswith("sqlite:"):
        if not Path(sqlite_path(url)).is_file():
            return False  # made fresh by the study
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
    return "studies" in tables


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
