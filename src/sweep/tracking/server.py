"""`mlflow server` on the one launcher of server processes (`sweep.processes`), for `sweep ui`
and `sweep server` alike: what is MLflow's here (its command, its job runner switched off, its
Host allowlist), the lifecycle there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from sweep import processes
from sweep.processes import check_port, local_url, stop, wait_healthy

STARTUP_SECONDS = 180  # a fresh PostgreSQL store runs MLflow's schema migrations first
# MLflow 3's GenAI job runner (a huey consumer per worker) is of no use to a tracking store.
NO_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

__all__ = [
    "check_port",
    "default_allowed_hosts",
    "local_url",
    "serve",
    "start",
    "stop",
    "wait_healthy",
]


def default_allowed_hosts() -> list[str]:
    """MLflow's Host allowlist (localhost, private ranges), which `--allowed-hosts` replaces."""
    from mlflow.server.security_utils import get_default_allowed_hosts  # ~1 s: Flask, FastAPI

    return list(get_default_allowed_hosts())


def command(cmd_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", *cmd_args]


def start(cmd_args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m mlflow server <cmd_args>` in its own process group, without the job runner."""
    return processes.start(command(cmd_args), {**(os.environ if env is None else env), **NO_JOBS})


def serve(
    cmd_args: list[str],
    url: str,
    env: dict[str, str] | None = None,
    on_ready: Callable[[], None] = lambda: None,
    timeout: float = STARTUP_SECONDS,
) -> int:
    """`mlflow server` until SIGINT/SIGTERM (exit 0), `on_ready` once /health answers."""
    env = {**(os.environ if env is None else env), **NO_JOBS}
    return processes.serve(command(cmd_args), url, env, on_ready, timeout)
