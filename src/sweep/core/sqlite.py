"""SQLite stores (MLflow's and Optuna's alike): where the file is, WAL, and fast commits.

`enable_wal` is called by both the study's storage and the MLflow adapter before they open a
SQLite store, and it installs the commit pragma for every engine of the process: a SQLite study
gets it with `tracking=none` too, explicitly rather than as a side effect of importing MLflow.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import Any


def sqlite_path(url: str) -> str:
    """The file path in a sqlite:/// URL (relative, or absolute with four slashes)."""
    rest = url.split("://", 1)[1]
    return rest[1:].split("?", 1)[0] if rest.startswith("/") else ""


def enable_wal(url: str) -> None:
    """Put a SQLite store in WAL mode once, so concurrent workers' writers don't block readers."""
    if url.startswith("sqlite:"):
        fast_commits()
        path = sqlite_path(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=60) as con:
            con.execute("PRAGMA journal_mode=WAL")


@functools.cache
def fast_commits() -> None:
    """Every SQLAlchemy engine of this process (MLflow's store, Optuna's storage) gets
    `_synchronous_normal` on connect; once per process."""
    import sqlalchemy

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", _synchronous_normal)


def _synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
    """WAL with synchronous=NORMAL: a commit stops waiting for fsync (~5 ms each here, and a trial
    makes dozens: Optuna's per-epoch reports, MLflow's run writes). The database stays
    consistent; only an OS crash or power cut can drop the last commits."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")
