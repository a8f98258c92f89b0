"""`mlflow server` on the one launcher of server processes (`sweep.core.processes`), for `sweep ui`
and `sweep server` alike: what is MLflow's here (its command, its job runner switched off, its
Host allowlist), the lifecycle there.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sweep.core import processes

STARTUP_SECONDS = 180  # a fresh PostgreSQL store runs MLflow's schema migrations first
# MLflow 3's GenAI job runner (a huey consumer per worker) is of no use to a tracking store.
NO_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def default_allowed_hosts() -> list[str]:
    """MLflow's Host allowlist (localhost, private ranges), which `--allowed-hosts` replaces."""
    from mlflow.server.security_utils import get_default_allowed_hosts  # ~1 s: Flask, FastAPI

    return list(get_default_allowed_hosts())


def command(cmd_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", *cmd_args]


def serve(cmd_args: list[str], url: str, env: dict[str, str] | None = None, **options: Any) -> int:
    """`mlflow server` without its job runner until SIGINT/SIGTERM (exit 0); `options` (on_ready,
    timeout) go to `processes.serve`."""
    env = {**(os.environ if env is None else env), **NO_JOBS}
    options["service"] = processes.Service(timeout=options.pop("timeout", STARTUP_SECONDS))
    return processes.serve(command(cmd_args), url, env, **options)
