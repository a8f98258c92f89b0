"""Where the stores are: URL checks, local folders, and the store a command reads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sweep.core.errors import ConfigError
from sweep.core.secrets import POSTGRES_SCHEMES, mask_url
from sweep.core.sqlite import sqlite_path

# SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which `postgresql+psycopg` names explicitly.
STORAGE_SCHEMES = ("sqlite", *POSTGRES_SCHEMES, "mysql", "mysql+pymysql")

TRACKING_SCHEMES = ("sqlite", "http", "https", *POSTGRES_SCHEMES, "file")

GRPC = "grpc://"  # Optuna's gRPC storage proxy (`python -m sweep proxy`), for many workers


def grpc_address(url: str) -> tuple[str, int]:
    """Host and port of `grpc://host:port`; anything more is refused: the proxy holds the
    database URL (and its password), a worker needs only where the proxy listens."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    extra = parts.username or parts.password or parts.path.strip("/") or parts.query
    if not parts.hostname or port is None or extra:
        raise ConfigError(
            f"search.storage={mask_url(url)!r}: a proxy is grpc://HOST:PORT and nothing more "
            "(start one with `python -m sweep proxy --storage postgresql://...`)"
        )
    return parts.hostname, port


def check_proxy_beats(interval: int | None, grace: int | None) -> None:
    """Refuse what would leave a dead worker's trial RUNNING for ever, or fail live ones, through
    the proxy: no interval or grace, or a grace under two intervals (each beat is a gRPC call
    and a database write; one beat a little late must not fail a live trial)."""
    if not interval or not grace or grace < 2 * interval:
        raise ConfigError(
            f"search.storage=grpc://... needs search.heartbeat_interval and search.grace_period "
            f"with grace_period >= 2 * heartbeat_interval (got {interval} and {grace}): through "
            "the proxy they are what fails a lost worker's trial"
        )


def check_url(key: str, url: Any, schemes: tuple[str, ...]) -> None:
    """Reject URLs whose scheme we cannot use, before anything is created with them."""
    if not isinstance(url, str) or "://" not in url:
        shown = f"***@{url.rsplit('@', 1)[1]}" if isinstance(url, str) and "@" in url else url
        raise ConfigError(f"{key}={shown!r} is not a URL; expected e.g. sqlite:///path/to/file.db")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in schemes:
        raise ConfigError(f"{key}: scheme {scheme!r} is not one of: {', '.join(schemes)}")
    if scheme == "sqlite":
        path = sqlite_path(url)
        if not path:
            raise ConfigError(f"{key}={url!r} names no database file")
        writable_dir(key, Path(path).parent)
    elif scheme != "file":
        if any(ch.isspace() for ch in url):  # a folder may hold a space, a network URL may not
            raise ConfigError(
                f"{key}={mask_url(url)!r} holds whitespace; percent-encode it (a space as %20) "
                "or keep the password in PGPASSWORD or ~/.pgpass"
            )
        parts = urlsplit(url)
        if url.split("://", 1)[1].count("@") > parts.netloc.count("@"):
            raise ConfigError(
                f"{key}={mask_url(url)!r}: its password holds / ? or #; percent-encode them "
                "(/ as %2F, ? as %3F, # as %23) or keep it in PGPASSWORD or ~/.pgpass"
            )
        if not parts.hostname:
            raise ConfigError(f"{key}={mask_url(url)!r} names no host")
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise ConfigError(f"{key}={mask_url(url)!r} has a bad port") from exc


def writable_dir(key: str, folder: Path) -> None:
    """Fail now, not mid-sweep, when a store's folder could not be created or written.

    Nothing is made here: a command that is refused later (or only reads) leaves no folder.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}: cannot create {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "folder" if existing == folder else "parent folder"
        raise ConfigError(f"{key}: {what} {existing} is not writable")


@dataclass(frozen=True)
class Store:
    """The tracking store a command that does not compose conf/ reads and writes."""

    uri: str
    folder: Path

    @property
    def artifact_root(self) -> str:
        return str(self.folder / "artifacts")


def store_location(store: str | Path | None = None, tracking_uri: str | None = None) -> Store:
    """--tracking-uri, else --store DIR, else MLFLOW_TRACKING_URI, else sqlite under ./mlruns."""
    folder = Path(store or "mlruns").expanduser().resolve()
    uri = tracking_uri
    if uri is None and store is None:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
    return Store(uri or f"sqlite:///{folder}/mlflow.db", folder)


def existing_store(store: str | Path | None = None, tracking_uri: str | None = None) -> Store:
    """store_location, refused in one line when it names a local store that was never made."""
    found = store_location(store, tracking_uri)
    if found.uri.startswith("sqlite:") and not Path(sqlite_path(found.uri)).is_file():
        raise ConfigError(
            f"no MLflow store at {sqlite_path(found.uri) or found.uri}; run `make sweep` first, "
            "or pass --store DIR or --tracking-uri URI"
        )
    check_url("--tracking-uri", found.uri, TRACKING_SCHEMES)
    return found
