"""`python -m sweep dashboard`: optuna-dashboard on the study's storage, on 127.0.0.1.

optuna-dashboard reads the Optuna storage directly (the embedded SQLite file or PostgreSQL) and
shows, live, every study in it: trials with their intermediate values per epoch, the history,
parameter importances and, for studies with several objectives, the Pareto front. It runs on the
one launcher of server processes (`sweep.core.processes`) and stops on Ctrl-C or SIGTERM with
exit 0. The child is `sweep.serve.dashboard_app` (optuna-dashboard's app behind a Host check),
given the storage URL without its password: PGPASSWORD carries that, out of `ps`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from sweep.config.stores import STORAGE_SCHEMES, Store, check_url
from sweep.core import processes
from sweep.core.errors import ConfigError
from sweep.core.secrets import mask_url
from sweep.core.sqlite import sqlite_path

STARTUP_SECONDS = 60
NAME = "optuna-dashboard"


def default_storage(store: Store) -> str:
    return f"sqlite:///{store.folder}/optuna.db"


def check_dashboard_storage(url: str) -> None:
    """One line, and no file made, for a malformed URL or an embedded study that is not there."""
    check_url("--storage", url, STORAGE_SCHEMES)
    if url.startswith("sqlite:") and not Path(sqlite_path(url)).is_file():
        raise ConfigError(
            f"no Optuna storage at {sqlite_path(url)}; run `make sweep` first, "
            "or pass --store DIR or --storage URL"
        )


def command(storage: str, host: str, port: int) -> list[str]:
    """The child's command line: this Python running `sweep.serve.dashboard_app` (no password)."""
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise ConfigError(f"{NAME} is not installed; pip install 'optuna-dashboard>=0.21,<0.22'")
    app = ["-m", "sweep.serve.dashboard_app", storage]
    return [sys.executable, *app, "--host", host, "--port", str(port)]


def study_urls(storage: str, base: str) -> list[str]:
    """One line per study: its name and its page in the dashboard."""
    import optuna

    rdb = optuna.storages.RDBStorage(
        storage, skip_compatibility_check=True, skip_table_creation=True
    )
    try:
        names = optuna.get_all_study_names(rdb)
        return [
            f"  study {name!r}  {base}/dashboard/studies/{rdb.get_study_id_from_name(name)}"
            for name in names
        ] or [f"  no study yet: {base}/dashboard shows them as they are made"]
    finally:
        rdb.engine.dispose()


def dashboard_command(
    store: Store, host: str = "127.0.0.1", port: int = 8080, storage: str | None = None
) -> int:
    """Serve optuna-dashboard on the storage until Ctrl-C; print each study's address."""
    url = storage or default_storage(store)
    check_dashboard_storage(url)
    bare, secret = processes.without_password(url)
    cmd = command(bare, host, port)
    processes.check_port(host, port)
    base = processes.local_url(host, port)

    def announce() -> None:
        print(f"{NAME} for {mask_url(url)} at {base}/dashboard  (Ctrl-C to stop)")
        print("\n".join(study_urls(url, base)), flush=True)

    return processes.serve(
        cmd,
        base,
        env=os.environ | secret,
        on_ready=announce,
        service=processes.Service(NAME, "/api/studies", STARTUP_SECONDS),
    )
