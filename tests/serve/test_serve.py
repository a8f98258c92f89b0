"""The launcher of `mlflow server` (`sweep.tracking.mlflow_server`), via `sweep ui` and `server`.

A server ends on Ctrl-C or SIGTERM with exit 0 and takes its whole process group with it; a
taken port is one line and exit 2 before anything starts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweep.core.processes import stop
from tests.conftest import clean_env


def _procs() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, parent pid, process group) of every process on the machine."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        found[int(pid)] = (state, int(ppid), int(pgrp))
    return found


def _live(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie nobody reaped has ended)."""
    return {p for p, (state, _, _) in _procs().items() if p in pids and state not in "ZX"}


def _descendants(root: int) -> set[int]:
    procs, tree = _procs(), {root}
    while more := {p for p, (_, pp, _) in procs.items() if pp in tree} - tree:
        tree |= more
    return tree - {root}


def _group(pgid: int) -> set[int]:
    return {p for p, (state, _, g) in _procs().items() if g == pgid and state not in "ZX"}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _argv(command: str, tmp_path: Path, port: int) -> list[str]:
    """`sweep ui` on an (empty) store, or `sweep server` on a SQLite backend, at `port`."""
    if command == "ui":
        (tmp_path / "mlflow.db").touch()
        return ["ui", "--store", str(tmp_path), "--port", str(port)]
    backend = f"sqlite:///{tmp_path}/server.db"
    return ["server", "--port", str(port), "--backend-store-uri", backend]


# --------------------------------------------------------------------------- fast


@pytest.mark.parametrize("command", ["ui", "server"])
def test_a_taken_port_is_one_line_and_exit_2(command, taken_port, tmp_path, capsys):
    from sweep.cli.runner import main

    assert main(_argv(command, tmp_path, taken_port)) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: port {taken_port} on 127.0.0.1 is in use; try PORT={taken_port + 1}"


def test_stop_kills_a_group_that_ignores_sigterm_after_the_grace():
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 60 & wait"], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(_group(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_group(proc.pid)) == 2
    started = time.monotonic()
    stop(proc, grace=1)
    assert proc.returncode == -signal.SIGKILL and time.monotonic() - started >= 1
    assert not _group(proc.pid), "the group's sleep outlived stop()"


# --------------------------------------------------------------------------- slow: real servers


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a script hands it down


@pytest.mark.slow
# Both commands stop through the one `processes.serve`, so each signal is sent to one of them.
@pytest.mark.parametrize(
    ("command", "sig"), [("ui", signal.SIGINT), ("server", signal.SIGTERM)], ids=["ui", "server"]
)
def test_a_signal_ends_the_server_with_exit_0_and_no_orphans(command, sig, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "out.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweep", *_argv(command, tmp_path, port)],
            cwd=tmp_path,  # `server`'s default artifacts folder lands here
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_sigint if sig == signal.SIGINT else None,
        )
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        server = _descendants(proc.pid)
        assert server, "no mlflow server under the command"
        os.kill(proc.pid, sig)  # what the terminal's Ctrl-C or a service manager sends
        assert proc.wait(60) == 0, log.read_text()
    finally:
        stop(proc)
    deadline = time.monotonic() + 5  # a last worker may still be on its way out of the group
    while _live(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _live(server), f"orphans: {_live(server)}\n{log.read_text()}"
    assert "Traceback" not in log.read_text()


def test_server_processes_default_to_the_cores_at_most_four(monkeypatch):
    from sweep.serve import server

    def workers(exposure: server.Exposure) -> str:
        args = server.server_args("sqlite://", "/tmp/a", exposure)
        return args[args.index("--workers") + 1]

    monkeypatch.setattr(server.os, "cpu_count", lambda: 2)
    assert workers(server.Exposure()) == "2"  # not MLflow's 4, each importing MLflow on 2 cores
    monkeypatch.setattr(server.os, "cpu_count", lambda: 16)
    assert workers(server.Exposure()) == "4"
    assert workers(server.Exposure(workers=8)) == "8"
