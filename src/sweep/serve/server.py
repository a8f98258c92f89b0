"""`python -m sweep server`: an MLflow tracking server for workers on many machines.

It runs `mlflow server` on a SQL backend store (PostgreSQL for real use) with artifacts proxied
to a folder or any artifact URI, bound to 127.0.0.1 unless told otherwise, with MLflow's Host
and CORS checks left at their safe defaults. The database password never reaches a command
line or a log: it is taken out of the URL and handed to libpq as PGPASSWORD.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sweep.core.errors import ConfigError, first_line
from sweep.core.processes import without_password
from sweep.core.secrets import POSTGRES_SCHEMES, mask_url

DB_ENV = "SWEEP_TRACKING_DB"
DEFAULT_ARTIFACTS = "mlruns/server-artifacts"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
AUTH_ENV = "MLFLOW_AUTH_CONFIG_PATH"


def artifacts_uri(destination: str) -> str:
    """An artifact URI MLflow accepts: URIs as given, folders made absolute (and created)."""
    if "://" in destination:
        return destination
    folder = Path(destination).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def check_options(
    backend_store_uri: str | None, allowed_hosts: str | None, cors_allowed_origins: str | None
) -> None:
    """Refuse what would switch MLflow's protections off or cannot work, in one line."""
    if not backend_store_uri:
        raise ConfigError(
            f"no backend store: set {DB_ENV}=postgresql://USER@HOST:5432/mlflow "
            "(create it with `createdb -h HOST -U USER mlflow`) or pass --backend-store-uri"
        )
    given = {"allowed-hosts": allowed_hosts, "cors-allowed-origins": cors_allowed_origins}
    wildcard = [n for n, v in given.items() if v and "*" in [x.strip() for x in v.split(",")]]
    if wildcard:
        raise ConfigError(
            f"--{wildcard[0]} '*' turns MLflow's protection off; "
            "list the names clients use instead, e.g. mlflow.lab:5000"
        )


def check_basic_auth(basic_auth: bool) -> None:
    """MLflow's basic auth ships a well-known admin password: refuse it without the admin's own
    config (MLFLOW_AUTH_CONFIG_PATH: admin_password, database_uri, default_permission)."""
    path = os.environ.get(AUTH_ENV)
    if basic_auth and not (path and Path(path).is_file()):
        raise ConfigError(
            f"--basic-auth needs {AUTH_ENV}=<an ini with [mlflow] admin_username, admin_password, "
            "database_uri, default_permission=READ>; MLflow's default admin password is public"
        )


def check_database(url: str, password: str | None, shown: str) -> None:
    """Connect once, so a missing database or role is one line now, not a traceback later."""
    import sqlalchemy

    connect_args = {"password": password} if password else {}
    engine = sqlalchemy.create_engine(url, connect_args=connect_args)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as exc:
        hint = ""
        if "does not exist" in str(exc):
            db = urlsplit(url).path.lstrip("/")
            hint = f" (create it first: createdb -h HOST -U USER {db})"
        raise ConfigError(f"backend store {shown}: {first_line(exc.orig or exc)}{hint}") from exc
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Exposure:
    """Where the server listens and who may reach it: the options that decide what is exposed."""

    host: str = "127.0.0.1"
    port: int = 5000
    workers: int | None = None
    allowed_hosts: str | None = None
    cors_allowed_origins: str | None = None
    basic_auth: bool = False


def server_args(store: str, artifacts: str, exposure: Exposure) -> list[str]:
    """`mlflow server` options: SQL store, proxied artifacts, MLflow's security defaults kept."""
    e = exposure
    args = ["--backend-store-uri", store, "--serve-artifacts", "--artifacts-destination", artifacts]
    if e.basic_auth:
        args += ["--app-name", "basic-auth"]
    args += ["--host", e.host, "--port", str(e.port)]
    args += ["--workers", str(e.workers or default_workers())]
    if e.allowed_hosts:
        args += ["--allowed-hosts", with_default_hosts(e.allowed_hosts)]
    if e.cors_allowed_origins:
        args += ["--cors-allowed-origins", e.cors_allowed_origins]
    return args


def default_workers() -> int:
    """One server process per core, at most MLflow's own 4: more processes than cores only
    start slower (each imports MLflow; 4 on 2 cores took 7.8 s to answer, `make bench`)."""
    return min(4, os.cpu_count() or 1)


def with_default_hosts(extra: str) -> str:
    """The user's Host names plus MLflow's defaults, which `--allowed-hosts` would replace."""
    from sweep.tracking import default_allowed_hosts

    names = [h.strip() for h in extra.split(",") if h.strip()]
    return ",".join(dict.fromkeys(names + default_allowed_hosts()))


def server_env(secret: dict[str, str]) -> dict[str, str]:
    """The server's environment: the password as PGPASSWORD, never the URL that held it."""
    env = dict(os.environ)
    env.pop(DB_ENV, None)
    return env | secret


def ensure_experiment(url: str, name: str) -> str:
    """Create the experiment through the server, so its artifacts go to the proxy."""
    from sweep.tracking import Tracker

    return Tracker(url, name).setup()


def announce(
    host: str, port: int, url: str, experiment: str, experiment_id: str, basic_auth: bool = False
) -> None:
    """What workers need to know, and what is exposed."""
    print(f"serving on {url} (experiment {experiment!r}, id {experiment_id})")
    if host not in LOOPBACK and not basic_auth:
        print(
            f"bound to {host}: workers use tracking.uri=http://<this machine>:{port}; "
            "MLflow accepts Host headers of localhost and private IPs only, add DNS names "
            "with --allowed-hosts; there is no login (add --basic-auth), so keep the port inside "
            "your network"
        )
    print("Ctrl-C stops the server", flush=True)


def server_command(
    backend_store_uri: str | None = None,
    artifacts_destination: str = DEFAULT_ARTIFACTS,
    experiment: str = "sine",
    **exposure: Any,
) -> int:
    """Check, start, wait until healthy and the experiment exists, then serve until Ctrl-C.

    `exposure`: the `Exposure` fields (host, port, workers, allowed hosts, CORS, basic auth).
    """
    from sweep.core.processes import check_port, local_url
    from sweep.tracking import serve

    e = Exposure(**exposure)
    backend_store_uri = backend_store_uri or os.environ.get(DB_ENV)
    check_options(backend_store_uri, e.allowed_hosts, e.cors_allowed_origins)
    check_basic_auth(e.basic_auth)
    check_port(e.host, e.port)
    store, secret = without_password(backend_store_uri)
    shown = mask_url(backend_store_uri)
    if urlsplit(store).scheme in POSTGRES_SCHEMES:
        check_database(store, secret.get("PGPASSWORD"), shown)
    artifacts = artifacts_uri(artifacts_destination)
    url = local_url(e.host, e.port)
    print(f"mlflow server: backend {shown}, artifacts {artifacts}", flush=True)

    def ready() -> None:
        experiment_id = ensure_experiment(url, experiment)
        announce(e.host, e.port, url, experiment, experiment_id, e.basic_auth)

    return serve(server_args(store, artifacts, e), url, env=server_env(secret), on_ready=ready)
