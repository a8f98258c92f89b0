"""`python -m sweep proxy`: Optuna's gRPC storage proxy in front of the study's database, so any
number of workers (`search.storage=grpc://host:port`) hold a constant number of its connections.

The proxy runs in this process: the database URL's password is taken out into PGPASSWORD (libpq
reads it there) and is on no command line of ours and in no line printed. Workers carry their
heartbeats through it as trial attributes (sweep.study.proxy), so it needs no heartbeat itself.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from sweep.config.stores import GRPC, STORAGE_SCHEMES, check_url
from sweep.core.console import say
from sweep.core.errors import EXIT_OK, ConfigError
from sweep.core.processes import check_port, interrupted_by_signals, without_password
from sweep.core.secrets import mask_url

STORAGE_ENV = "SWEEP_STORAGE"


def database_url(storage: str | None) -> str:
    """--storage or $SWEEP_STORAGE: a server database's SQLAlchemy URL, refused in one line."""
    url = storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise ConfigError(
            f"no database: pass --storage postgresql://USER@HOST:5432/optuna or set {STORAGE_ENV} "
            "(password in PGPASSWORD or ~/.pgpass)"
        )
    if url.startswith((GRPC, "sqlite:")):
        raise ConfigError(
            f"--storage {mask_url(url)}: the proxy fronts a database server (PostgreSQL); a "
            "SQLite file serves one machine without it, and a proxy does not front a proxy"
        )
    check_url("--storage", url, STORAGE_SCHEMES)
    return url


def proxy_command(
    storage: str | None = None, host: str = "127.0.0.1", port: int = 13000, threads: int = 10
) -> int:
    """Serve the study's database to workers over gRPC until Ctrl-C or SIGTERM (exit 0)."""
    from optuna.storages import run_grpc_proxy_server

    from sweep.study.storage import check_storage, proxy_backend

    url = database_url(storage)
    bare, secret = without_password(url)
    os.environ.update(secret)  # libpq reads it at each connect; the URL we keep has none
    os.environ.pop(STORAGE_ENV, None)
    check_port(host, port)
    check_storage(bare)
    backend = proxy_backend(bare, threads)
    say(f"proxy for {mask_url(url)} on {GRPC}{host}:{port} ({threads} connections at most)")
    say(f"workers: search.storage={GRPC}<this machine>:{port}; Ctrl-C stops it")
    with interrupted_by_signals():
        try:
            pool = ThreadPoolExecutor(max_workers=threads)
            run_grpc_proxy_server(backend, host=host, port=port, thread_pool=pool)
        except KeyboardInterrupt:
            say("\nstopping the proxy")
    return EXIT_OK
