"""`mlflow server` on the one launcher of server processes (`sweep.core.processes`), for `sweep ui`
and `sweep server` alike: what is MLflow's here (its command, its job runner switched off, its
Host allowlist), the lifecycle there.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
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
    """`mlflow server <cmd_args>`, through `main` below: one Python process instead of two."""
    return [sys.executable, "-m", __name__, *cmd_args]


class _InProcess:
    """What MLflow's `_run_server` gets from `_exec_cmd` for its uvicorn command: that uvicorn,
    run in this process when waited on.

    `mlflow server` imports MLflow (~3 s) and then starts uvicorn in a second Python that
    imports it all again before it answers: `ui` and `server` took 6-9 s to be ready (`make
    bench`, startup part). Here the command line, the checks, the store's schema and every
    environment variable are still MLflow's; only the second import is saved. uvicorn handles
    SIGINT/SIGTERM itself, so MLflow's forwarding of them has nothing to forward.
    """

    def __init__(self, cmd: list[str], extra_env: dict[str, str] | None = None, **_: Any) -> None:
        self.args, self.env, self.pid = cmd[3:], extra_env or {}, os.getpid()

    def poll(self) -> None:
        return None

    def send_signal(self, signum: int) -> None:
        """Nothing to forward to: uvicorn in this process has the signal already."""

    def wait(self) -> None:
        import uvicorn

        os.environ.update(self.env)
        uvicorn.main.main(args=self.args, prog_name="uvicorn")


def main(argv: list[str]) -> None:
    """`mlflow server <argv>` by MLflow's own CLI, serving in this process (`_InProcess`)."""
    import mlflow.server
    from mlflow.cli import cli

    exec_cmd = mlflow.server._exec_cmd  # a private name: absent in a later MLflow, two processes

    def run(cmd: list[str], **kwargs: Any) -> Any:
        in_process = cmd[1:3] == ["-m", "uvicorn"]
        return _InProcess(cmd, **kwargs) if in_process else exec_cmd(cmd, **kwargs)

    mlflow.server._exec_cmd = run
    cli.main(["server", *argv], prog_name="mlflow")


def serve(cmd_args: list[str], url: str, env: dict[str, str] | None = None, **options: Any) -> int:
    """`mlflow server` without its job runner until SIGINT/SIGTERM (exit 0); `options` (on_ready,
    timeout) go to `processes.serve`."""
    env = {**(os.environ if env is None else env), **NO_JOBS}
    options["service"] = processes.Service(timeout=options.pop("timeout", STARTUP_SECONDS))
    # The caller's `on_ready` talks to the server through MLflow's client: import it (~2 s) while
    # the server process boots on the other core, not after it answers.
    warm = threading.Thread(target=importlib.import_module, args=(f"{__package__}.runs",))
    warm.daemon = True
    warm.start()
    return processes.serve(command(cmd_args), url, env, **options)


if __name__ == "__main__":
    main(sys.argv[1:])
