"""Many workers on one database through Optuna's gRPC proxy (`python -m sweep proxy`), with the
project's heartbeat carried through it.

Each test makes its own role (with a password, to check it stays out of the proxy's command line
and output) and database on the PostgreSQL at 127.0.0.1:5432, starts the proxy on a free loopback
port, and drops it all afterwards; every process it starts is stopped by PID.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from sweep.core.processes import stop
from sweep.study.proxy import BEAT_ATTR, answers
from tests.conftest import ROOT, clean_env, sweep_cmd
from tests.e2e.test_distributed import PG_HOST, PG_PORT, _admin, _free_port

N_TRIALS = 6
FAST = [
    "experiment=tiny",
    f"search.n_trials={N_TRIALS}",
    "tracking.enabled=false",
    "search.heartbeat_interval=1",
    "search.grace_period=10",
]
WORKER_SECONDS = 400  # a study that never ends (a trial left RUNNING for ever) fails here


@dataclass
class Database:
    """A throwaway role with a password and its one database."""

    role: str
    password: str

    @property
    def name(self) -> str:
        return f"{self.role}_optuna"

    @property
    def url(self) -> str:
        return f"postgresql://{self.role}:{self.password}@{PG_HOST}:{PG_PORT}/{self.name}"


@pytest.fixture
def db() -> Iterator[Database]:
    """A fresh role and database per test, dropped after."""
    con = _admin()
    found = Database(f"sweep_p_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    with con.cursor() as cur:
        cur.execute(f"CREATE ROLE {found.role} LOGIN PASSWORD %s", (found.password,))
        cur.execute(f"CREATE DATABASE {found.name} OWNER {found.role}")
    try:
        yield found
    finally:
        with con.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {found.name} WITH (FORCE)")
            cur.execute(f"DROP ROLE IF EXISTS {found.role}")
        con.close()


@dataclass
class Proxy:
    proc: subprocess.Popen
    url: str
    log: Path


@contextlib.contextmanager
def proxy(db: Database, folder: Path, threads: int = 10) -> Iterator[Proxy]:
    """`serve_proxy` for `db`, whose password (given in --storage) it never prints."""
    with serve_proxy(db.url, folder, threads) as px:
        yield px
    assert db.password not in px.log.read_text()


@contextlib.contextmanager
def serve_proxy(url: str, folder: Path, threads: int = 10) -> Iterator[Proxy]:
    """`python -m sweep proxy --storage url` on a free loopback port; stopped with SIGTERM
    (exit 0) after."""
    port, log = _free_port(), folder / "proxy.log"
    cmd = [sys.executable, "-m", "sweep", "proxy", "--storage", url, "--port", str(port)]
    cmd += ["--threads", str(threads)]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not answers(f"grpc://127.0.0.1:{port}", seconds=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(log.read_text())
            time.sleep(0.2)
        yield Proxy(proc, f"grpc://127.0.0.1:{port}", log)
    finally:
        stop(proc, grace=10)
    assert proc.returncode == 0, log.read_text()


def worker(folder: Path, i: int, storage: str, *args: str) -> subprocess.Popen:
    """`python -m sweep worker` as one machine would run it, with its own local folder."""
    log = open(folder / f"worker{i}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", "worker", *FAST, f"search.storage={storage}", *args,
         f"paths.store={folder}/w{i}"],
        cwd=ROOT, env=clean_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


@contextlib.contextmanager
def workers(folder: Path, storage: str, n: int, *args: str) -> Iterator[list[subprocess.Popen]]:
    """n workers on `storage`; whatever happens, none outlives the block."""
    procs = [worker(folder, i, storage, *args) for i in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            stop(p, grace=5)


def wait_all(procs: list[subprocess.Popen], folder: Path, seconds: float = WORKER_SECONDS) -> None:
    """Wait for the workers; a study left waiting on a trial RUNNING for ever fails here."""
    deadline = time.monotonic() + seconds
    for i, p in enumerate(procs):
        try:
            p.wait(max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            logs = (folder / f"worker{i}.log").read_text()[-2000:]
            pytest.fail(f"worker {i} still running after {seconds:.0f}s:\n{logs}")


def trials(db: Database) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read straight from the database."""
    rdb = optuna.storages.RDBStorage(db.url)
    try:
        return optuna.load_study(study_name="sine-mlp", storage=rdb).trials
    finally:
        rdb.engine.dispose()


def connections(db: Database) -> int:
    """Client connections to the study's database now (pg_stat_activity)."""
    con = _admin()
    try:
        with con.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db.name,))
            return cur.fetchone()[0]
    finally:
        con.close()


def most_connections(db: Database, procs: list[subprocess.Popen]) -> int:
    """The most connections seen while the workers run (sampled every 0.2 s)."""
    most, deadline = 0, time.monotonic() + WORKER_SECONDS
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        most = max(most, connections(db))
        time.sleep(0.2)
    return most


def finished(found: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in found if t.state.name in ("COMPLETE", "PRUNED")]


def test_workers_through_the_proxy_finish_the_study_exactly_on_constant_connections(db, tmp_path):
    with proxy(db, tmp_path, threads=2) as px, workers(tmp_path, px.url, 3) as procs:
        most = most_connections(db, procs)
        wait_all(procs, tmp_path)
    assert [p.returncode for p in procs] == [0, 0, 0], (tmp_path / "worker0.log").read_text()
    found = trials(db)
    assert len(finished(found)) == N_TRIALS
    assert not [t for t in found if t.state.name == "RUNNING"]
    assert all(BEAT_ATTR in t.system_attrs for t in finished(found))  # beats went through it
    assert 1 <= most <= 2, f"{most} connections through a proxy of 2 threads"
    print(f"connections with 3 workers through the proxy (--threads 2): at most {most}")


def test_three_workers_direct_hold_connections_of_their_own(db, tmp_path):
    """The comparison the docs quote: the same 3 workers on the database directly."""
    with workers(tmp_path, db.url, 3) as procs:
        most = most_connections(db, procs)
        wait_all(procs, tmp_path)
    assert [p.returncode for p in procs] == [0, 0, 0], (tmp_path / "worker0.log").read_text()
    assert len(finished(trials(db))) == N_TRIALS
    assert most > 2, most
    print(f"connections with 3 workers direct: at most {most}")


def wait_running(db: Database, n: int, procs: list[subprocess.Popen], seconds: float = 240) -> None:
    """Until n trials run at once, each having beaten through the proxy: every worker mid-trial."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), "a worker ended before all were busy"
        with contextlib.suppress(KeyError):  # the study is not made yet
            running = [t for t in trials(db) if t.state.name == "RUNNING"]
            if len([t for t in running if BEAT_ATTR in t.system_attrs]) >= n:
                return
        time.sleep(0.3)
    pytest.fail(f"never saw {n} trials running at once")


@pytest.mark.slow
def test_a_worker_killed_through_the_proxy_has_its_trial_failed_and_retried(db, tmp_path):
    with proxy(db, tmp_path) as px, workers(tmp_path, px.url, 3, "trainer.epochs=60") as procs:
        wait_running(db, 3, procs)
        lost = {t.number for t in trials(db) if t.state.name == "RUNNING"}
        procs[0].send_signal(signal.SIGKILL)
        wait_all(procs, tmp_path)
    assert [p.returncode for p in procs[1:]] == [0, 0], (tmp_path / "worker1.log").read_text()
    found = trials(db)
    assert len(finished(found)) == N_TRIALS
    assert not [t for t in found if t.state.name == "RUNNING"]
    stale = [t for t in found if t.state.name == "FAIL" and "fail_reason" not in t.user_attrs]
    failed = [t for t in stale if t.number in lost]  # not those that diverged, which say why
    assert len(stale) == 1, [(t.number, t.state.name, t.user_attrs) for t in found]
    assert len(failed) == 1, [(t.number, t.state.name) for t in found]
    retries = [t for t in found if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retries) == 1 and retries[0].params == failed[0].params
    assert retries[0].state.name in ("COMPLETE", "PRUNED")


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("search.grace_period=15", "grace_period >= 2 * heartbeat_interval"),
        ("search.storage=grpc://127.0.0.1", "grpc://HOST:PORT and nothing more"),
    ],
)
def test_a_proxy_setup_that_would_drop_the_heartbeat_is_refused_in_one_line(
    tmp_path, override, said
):
    args = ["search.storage=grpc://127.0.0.1:9", "search.heartbeat_interval=10", override]
    done = sweep_cmd("worker", *args, f"paths.store={tmp_path}")
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_proxy_address_with_a_password_is_refused_masked(tmp_path):
    done = sweep_cmd(
        "worker", "search.storage=grpc://u:s3cret@127.0.0.1:9", f"paths.store={tmp_path}"
    )
    assert done.returncode == 2
    assert "s3cret" not in done.stderr + done.stdout and "***" in done.stderr


def test_the_proxy_refuses_what_it_cannot_front_in_one_line(tmp_path):
    done = sweep_cmd("proxy", "--storage", f"sqlite:///{tmp_path}/optuna.db")
    assert done.returncode == 2 and "database server" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_workers_direct_and_through_the_proxy_share_a_study_and_its_heartbeats(db, tmp_path):
    """Each kind fails only the other's lost trials: trials longer than the grace period, so a
    worker blind to the other kind's beats would fail its live trials."""
    long = ["trainer.epochs=1000", "search/pruner=none", "search.grace_period=6"]
    with proxy(db, tmp_path) as px, workers(tmp_path, px.url, 2, *long) as procs:
        procs.append(worker(tmp_path, 2, db.url, *long))  # stopped with the others
        wait_running(db, 3, procs)
        procs[0].send_signal(signal.SIGKILL)
        wait_all(procs, tmp_path)
    assert [p.returncode for p in procs[1:]] == [0, 0], (tmp_path / "worker2.log").read_text()
    found = trials(db)
    assert len(finished(found)) == N_TRIALS
    failed = [t for t in found if t.state.name == "FAIL"]
    reasons = [t.user_attrs.get("fail_reason") for t in failed]  # diverged ones name why
    assert len([r for r in reasons if r is None or r.startswith("worker lost")]) == 1, reasons
    seconds = sorted(t.duration.total_seconds() for t in finished(found))
    assert seconds[len(seconds) // 2] > 6, seconds  # most trials outlast the grace period
