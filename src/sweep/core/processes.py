"""The one launcher of server processes (mlflow server, optuna-dashboard): no MLflow in here.

It owns a server's whole lifecycle: the port check, the start in its own process group (so its
workers go with it), the wait until it answers, the stop (SIGTERM to the group, SIGKILL after a
grace) and the wait for Ctrl-C or SIGTERM, which is how a server is meant to end: exit 0.
`sweep.tracking.mlflow_server` starts `mlflow server` with it, `sweep.serve.dashboard`
optuna-dashboard.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sweep.core.errors import EXIT_OK, ConfigError, SweepError
from sweep.core.secrets import mask_url, split_password

STARTUP_SECONDS = 180
STOP_GRACE = 15
# A health check goes straight to the server, never through an HTTP(S)_PROXY of the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_port(host: str, port: int) -> None:
    """Refuse a taken port in one line now, not in uvicorn's traceback after the imports."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use; try PORT={port + 1}") from exc
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def local_url(host: str, port: int) -> str:
    """Where this machine reaches the server (a wildcard bind answers on loopback too)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def without_password(url: str) -> tuple[str, dict[str, str]]:
    """A database URL for a server's command line, which every local user reads (`ps`,
    /proc/PID/cmdline), and the environment that carries its password instead: PGPASSWORD,
    which libpq reads under psycopg2 and psycopg 3 alike."""
    bare, password = split_password(url)
    if mask_url(bare) != bare:  # a MySQL password, a `?password=` query: no variable takes it
        raise ConfigError(
            f"{mask_url(url)}: its password would show on the server's command line to every "
            "local user; keep it in PGPASSWORD or ~/.pgpass (MySQL: ~/.my.cnf)"
        )
    return bare, {} if password is None else {"PGPASSWORD": password}


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """The server's command in its own process group (stopped as one by `stop`)."""
    return subprocess.Popen(cmd, env=os.environ if env is None else env, start_new_session=True)


@dataclass(frozen=True)
class Service:
    """What a server is called, where it says it is up, and how long it may take to start."""

    name: str = "mlflow server"
    health: str = "/health"
    timeout: float = STARTUP_SECONDS


def wait_healthy(url: str, proc: subprocess.Popen, service: Service = Service()) -> None:
    """Block until `health` answers 200; one line (SweepError) if the server dies or never does."""
    name, health = service.name, service.health
    deadline = time.monotonic() + service.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SweepError(f"{name} exited with code {proc.returncode}; see its output")
        with contextlib.suppress(OSError), _DIRECT.open(f"{url}{health}", timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.5)
    raise SweepError(f"{name} did not answer on {url}{health} within {service.timeout:.0f}s")


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the process's group (it leads one when started by `start`), else the process."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def stop(proc: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """End a process and its group: SIGTERM, then SIGKILL if it is still there after `grace`."""
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt once, even where SIGINT came in ignored
    (`cmd &` in a script); later ones are ignored so the stop that follows is not cut short."""
    raised = False

    def handler(signum: int, frame: object) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def serve(
    cmd: list[str],
    url: str,
    env: dict[str, str] | None = None,
    on_ready: Callable[[], None] = lambda: None,
    service: Service = Service(),
) -> int:
    """Start the server, call `on_ready` once it answers, keep it up until SIGINT/SIGTERM (exit 0);
    whatever happens, the server's process group is gone when this returns."""
    with interrupted_by_signals():
        proc = None
        try:
            proc = start(cmd, env)
            wait_healthy(url, proc, service)
            on_ready()
            code = proc.wait()
        except KeyboardInterrupt:
            print(f"\nstopping the {service.name}", file=sys.stderr, flush=True)
            return EXIT_OK
        finally:
            if proc is not None:
                stop(proc)
    raise SweepError(f"{service.name} exited on its own with code {code}; see its output")
