"""`python -m sweep server`: an MLflow tracking server for workers on many machines.

It runs `mlflow server` on a SQL backend store (PostgreSQL for real use) with artifacts proxied
to a folder or any artifact URI, bound to 127.0.0.1 unless told otherwise, with MLflow's Host
and CORS checks left at their safe defaults. The database password never reaches a command
line or a log: it is taken out of the URL and handed to libpq as PGPASSWORD.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from sweep.config import mask_url
from sweep.errors import ConfigError, first_line

DB_ENV = "SWEEP_TRACKING_DB"
DEFAULT_ARTIFACTS = "mlruns/server-artifacts"
POSTGRES = ("postgresql", "postgresql+psycopg2", "postgres")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The server's options; everything else keeps MLflow's (safe) defaults."""
    p = argparse.ArgumentParser(
        prog="python -m sweep server",
        description="MLflow tracking server on a SQL backend (PostgreSQL), artifacts proxied.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument(
        "--backend-store-uri",
        default=os.environ.get(DB_ENV),
        help=f"SQLAlchemy URL of the run database, e.g. postgresql://mlflow@db/mlflow "
        f"(default: ${DB_ENV}); put the password in PGPASSWORD or ~/.pgpass, not here",
    )
    p.add_argument(
        "--artifacts-destination",
        default=DEFAULT_ARTIFACTS,
        help=f"a folder or an artifact URI such as s3://bucket (default {DEFAULT_ARTIFACTS})",
    )
    p.add_argument("--experiment", default="sine", help="experiment created before workers come")
    p.add_argument("--workers", type=int, default=None, help="server processes (MLflow's: 4)")
    p.add_argument(
        "--allowed-hosts", default=None, help="extra Host headers to accept, e.g. mlflow.lab:5000"
    )
    p.add_argument("--cors-allowed-origins", default=None, help="extra browser origins to allow")
    return p.parse_args(argv)


def split_password(url: str) -> tuple[str, str | None]:
    """A PostgreSQL URL without its password, and the password (for PGPASSWORD)."""
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES or parts.password is None:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}")), unquote(parts.password)


def artifacts_uri(destination: str) -> str:
    """An artifact URI MLflow accepts: URIs as given, folders made absolute (and created)."""
    if "://" in destination:
        return destination
    folder = Path(destination).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def check_options(args: argparse.Namespace) -> None:
    """Refuse what would switch MLflow's protections off or cannot work, in one line."""
    if not args.backend_store_uri:
        raise ConfigError(
            f"no backend store: set {DB_ENV}=postgresql://USER@HOST:5432/mlflow "
            "(create it with `createdb -h HOST -U USER mlflow`) or pass --backend-store-uri"
        )
    for name in ("allowed_hosts", "cors_allowed_origins"):
        value = getattr(args, name)
        if value and "*" in [v.strip() for v in value.split(",")]:
            raise ConfigError(
                f"--{name.replace('_', '-')} '*' turns MLflow's protection off; list the "
                "names clients use instead, e.g. mlflow.lab:5000"
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


def server_command(args: argparse.Namespace, store: str, artifacts: str) -> list[str]:
    """`mlflow server ...`: SQL store, proxied artifacts, MLflow's security defaults kept."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store]
    cmd += ["--serve-artifacts", "--artifacts-destination", artifacts]
    cmd += ["--host", args.host, "--port", str(args.port)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts(args.allowed_hosts)]
    if args.cors_allowed_origins:
        cmd += ["--cors-allowed-origins", args.cors_allowed_origins]
    return cmd


def allowed_hosts(extra: str) -> str:
    """The user's Host names plus MLflow's defaults, which `--allowed-hosts` would replace."""
    from mlflow.server.security_utils import get_default_allowed_hosts

    names = [h.strip() for h in extra.split(",") if h.strip()]
    return ",".join(dict.fromkeys(names + get_default_allowed_hosts()))


def local_url(host: str, port: int) -> str:
    """Where this machine reaches the server (a wildcard bind answers on loopback too)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Block until /health answers (the schema migration runs before that) or the server dies."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"mlflow server exited with code {proc.returncode}; see above")
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise ConfigError(f"mlflow server did not answer on {url}/health within {timeout:.0f}s")


def ensure_experiment(url: str, name: str) -> str:
    """Create the experiment through the server, so its artifacts go to the proxy."""
    from sweep.tracking import Tracker

    return Tracker(url, name).setup()


def stop(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the server's process group (it has uvicorn workers), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """Start `mlflow server` in its own process group; returns it and its local URL."""
    store, password = split_password(args.backend_store_uri)
    if urlsplit(store).scheme in POSTGRES:
        check_database(store, password, mask_url(args.backend_store_uri))
    env = dict(os.environ)
    env.pop(DB_ENV, None)
    if password is not None:
        env["PGPASSWORD"] = password
    artifacts = artifacts_uri(args.artifacts_destination)
    cmd = server_command(args, store, artifacts)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    print(f"mlflow server: backend {mask_url(args.backend_store_uri)}, artifacts {artifacts}")
    return proc, local_url(args.host, args.port)


def announce(args: argparse.Namespace, url: str, experiment_id: str) -> None:
    """What workers need to know, and what is exposed."""
    print(f"serving on {url} (experiment {args.experiment!r}, id {experiment_id})")
    if args.host not in LOOPBACK:
        print(
            f"bound to {args.host}: workers use tracking.uri=http://<this machine>:{args.port}; "
            "MLflow accepts Host headers of localhost and private IPs only, add DNS names "
            "with --allowed-hosts; there is no login, so keep the port inside your network"
        )
    print("Ctrl-C stops the server", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(argv: list[str]) -> int:
    """Start the server, wait until it is healthy and the experiment exists, then keep it up."""
    args = parse_args(argv)
    try:
        check_options(args)
        proc, url = start(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        wait_healthy(url, proc)
        announce(args, url, ensure_experiment(url, args.experiment))
        return proc.wait()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopping the server", file=sys.stderr)
        return 0
    finally:
        stop(proc)


def main(**options: object) -> int:
    """The runner's entry (interim: the launcher is being unified)."""
    argv: list[str] = []
    for key, value in options.items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return serve(argv)
