"""Service faults a long sweep meets (docs/faults.md is the matrix; each row names its test here).

The PostgreSQL cases reuse test_distributed's throwaway role and databases (`pg`) and its
worker launcher; nothing here stops or restarts the shared server on 127.0.0.1:5432.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from sweep.cli.runner import main
from sweep.core.processes import stop
from tests.conftest import ROOT, clean_env, run_cli
from tests.e2e.test_distributed import (  # noqa: F401 - pg is a fixture
    Server,
    _free_port,
    _wait_all_busy,
    _worker,
    pg,
    start_server,
    tree_pids,
)
from tests.e2e.test_reliability import FAST, _popen, _study, _wait_for_running_trial

SMALL = ["search.n_trials=3", "trainer.epochs=2"]


def _start(store: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    """`python -m sweep sweep <args>` in the background with its own environment (clean_env
    drops every MLFLOW_ variable; a test of MLflow's retry settings passes them here)."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", "sweep", *args, f"paths.store={store}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # stop() then ends its whole group; no signal of ours reaches it
    )


def _kill_server(server: Server) -> None:
    """The server's machine or container is lost: its whole process tree, at once."""
    for pid in tree_pids(server.proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.proc.wait()


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _client_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def _one_record_per_run(trials: list, runs: list) -> None:
    """One parent, no run left RUNNING, and no run made twice: every child run is the one a
    trial names (a retry inherits its original's attributes, then names its own run)."""
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert len([r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]) == 1
    named = {t.user_attrs["mlflow_run_id"] for t in trials if "mlflow_run_id" in t.user_attrs}
    children = {r.info.run_id for r in runs if r.data.tags.get("sweep.kind") == "trial"}
    assert children == named, [r.info.run_name for r in runs]


def _sweep_in_process(*args: str) -> tuple[int, str]:
    """`python -m sweep sweep <args>` through the one runner: exit code and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["sweep", "experiment=tiny", *args])
    return code, err.getvalue()


def test_a_study_pointed_at_mlflows_sqlite_store_is_one_line(tmp_path):
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(tracking).search_experiments()  # MLflow's schema, as after any sweep
    before = (tmp_path / "mlflow.db").read_bytes()
    code, err = _sweep_in_process(f"paths.store={tmp_path}", f"search.storage={tracking}")
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "MLflow's tracking database" in err and "schema" not in err
    assert (tmp_path / "mlflow.db").read_bytes() == before  # untouched


@pytest.mark.slow
def test_a_study_pointed_at_mlflows_postgres_database_is_one_line(pg, tmp_path):  # noqa: F811
    MlflowClient(pg.url("mlflow")).search_experiments()
    code, err = _sweep_in_process(f"paths.store={tmp_path}", f"search.storage={pg.url('mlflow')}")
    assert code == 2, err
    assert err.count("\n") == 1 and "MLflow's tracking database" in err, err
    assert pg.password not in err and f"{pg.role}:***@" in err


@pytest.mark.slow
def test_workers_started_at_once_on_separate_hosts_make_one_study(pg, tmp_path):  # noqa: F811
    """Four workers, each with its own paths.store (so no shared lock file, as on four hosts),
    started together on a fresh PostgreSQL study and tracking database."""
    storage, tracking = pg.url("optuna"), pg.url("mlflow")
    args = [*SMALL, f"search.storage={storage}", f"tracking.uri={tracking}"]
    procs = [_worker(tmp_path, i, args) for i in range(4)]
    try:
        for p in procs:
            p.wait(timeout=400)
    finally:
        for p in procs:
            stop(p, grace=5)
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(4)]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(logs)

    summaries = optuna.get_all_study_summaries(storage)
    assert [s.study_name for s in summaries] == ["sine-mlp"]
    study = optuna.load_study(study_name="sine-mlp", storage=storage)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3
    assert sum(bool(t.user_attrs.get("baseline")) for t in study.trials) == 1
    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name("sine").experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.run_id == study.user_attrs["mlflow_parent_run_id"]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    for i in range(4):
        assert not list(Path(tmp_path / f"w{i}").glob("*.db"))  # no local store was used


def not_the_services_fault(reason: str) -> bool:
    """A trial may fail for its own reasons (SGD diverging at a high rate) or be given back by a
    worker that asked at the same moment as another ("surplus"); never for the outage."""
    return reason.startswith(("surplus", "loss diverged"))


@pytest.mark.slow
def test_a_tracking_server_restarted_mid_sweep_loses_nothing(pg, tmp_path):  # noqa: F811
    """Three workers started at the same instant on a fresh PostgreSQL study; once all three are
    mid-trial the server is killed, and comes back on the same port ~20 s later. MLflow's client
    retries with backoff and a trial waiting on it keeps beating: no trial failed for it."""
    port = _free_port()
    servers = [start_server(pg.url("mlflow"), port, tmp_path / "s1")]
    storage = pg.url("optuna")
    # its own study and experiment: this module's other tests use the same two databases
    args = ["search.n_trials=10", "trainer.epochs=60", f"search.storage={storage}"]
    args += ["search.study_name=restart", "tracking.experiment=restart"]
    args += [f"tracking.uri={servers[0].url}"]
    procs = [_worker(tmp_path, i, args) for i in range(3)]
    try:
        _wait_all_busy(storage, 3, procs, timeout=300, study_name="restart")
        _kill_server(servers[0])
        down = time.monotonic()
        time.sleep(10)
        servers.append(start_server(pg.url("mlflow"), port, tmp_path / "s2"))
        downtime = time.monotonic() - down
        for p in procs:
            p.wait(timeout=600)
        runs = _client_runs(servers[1].url, "restart")
    finally:
        for p in (*procs, *(s.proc for s in servers)):
            stop(p, grace=30)
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(3)]
    assert [p.returncode for p in procs] == [0] * 3, "\n".join(logs)
    rdb = optuna.storages.RDBStorage(storage)
    study = optuna.load_study(study_name="restart", storage=rdb)
    trials, parent_id = study.trials, study.user_attrs["mlflow_parent_run_id"]
    rdb.engine.dispose()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 10, states
    assert "RUNNING" not in states, states
    assert sum(bool(t.user_attrs.get("baseline")) for t in trials) == 1
    failed = [t.user_attrs for t in trials if t.state.name == "FAIL"]
    assert all(not_the_services_fault(a.get("fail_reason", "")) for a in failed), failed
    _one_record_per_run(trials, runs)
    (parent,) = [r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
    by_id = {r.info.run_id: r for r in runs}
    for t in trials:  # every finished trial's record is complete: metrics and status
        if t.state.name in ("COMPLETE", "PRUNED"):
            run = by_id[t.user_attrs["mlflow_run_id"]]
            assert run.info.status in ("FINISHED", "KILLED") and "val_mse" in run.data.metrics
    print(f"server down {downtime:.0f} s")


@pytest.mark.slow
def test_a_tracking_server_down_past_the_retry_budget_is_one_line_and_the_next_start_completes(
    pg,  # noqa: F811
    tmp_path,
):
    """The server is lost mid-trial and stays down past MLflow's retry budget (made seconds here
    by the user's own MLFLOW_HTTP_REQUEST_MAX_RETRIES / _BACKOFF_FACTOR, which the sweep keeps).
    The worker fails the trial with that reason, queues its parameters and stops in one line;
    once the server is back, the same command completes the study and closes the orphan run."""
    port = _free_port()
    servers = [start_server(pg.url("mlflow"), port, tmp_path / "s1")]
    store = tmp_path / "store"
    args = [*FAST, "search.n_trials=3", "trainer.epochs=200", "tracking.experiment=budget"]
    args += [f"tracking.uri={servers[0].url}"]
    budget = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    proc = _start(store, *args, env={**clean_env(), **budget})
    try:
        lost = _wait_for_running_trial(store, after=1)
        _kill_server(servers[0])
        down = time.monotonic()
        out, err = proc.communicate(timeout=300)
        gave_up = time.monotonic() - down
        first = _study(store).trials  # as the first start left them
        servers.append(start_server(pg.url("mlflow"), port, tmp_path / "s2"))
        again = run_cli("sweep", *args, store=store)  # MLflow's default budget again
        runs = _client_runs(servers[1].url, "budget")
    finally:
        for p in (proc, *(s.proc for s in servers)):
            stop(p, grace=30)

    assert proc.returncode == 1, out + err
    # one error line; at most a warning naming a run whose plots were being written
    assert all(line.startswith(("error: ", "warning: ")) for line in err.splitlines()), err
    (line,) = _errors(err)
    assert line.startswith(f"error: tracking server {servers[0].url} did not answer"), line
    assert "2 retries" in line and line.endswith(f"trial {lost} is queued again"), line
    assert "run the same command again" in out
    failed = first[lost]
    assert failed.state.name == "FAIL"
    assert failed.user_attrs["fail_reason"].startswith("tracking server"), failed.user_attrs
    (queued,) = [t for t in first if t.state.name == "WAITING"]
    assert queued.user_attrs["retry_of"] == lost
    assert queued.system_attrs["fixed_params"] == failed.params

    assert again.returncode == 0, again.stdout + again.stderr
    trials = _study(store).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 3, states
    assert not [s for s in states if s in ("RUNNING", "WAITING")], states
    retried = trials[queued.number]
    assert retried.state.name in ("COMPLETE", "PRUNED") and retried.params == failed.params
    _one_record_per_run(trials, runs)
    orphan = next(r for r in runs if r.info.run_id == failed.user_attrs["mlflow_run_id"])
    assert orphan.info.status == "KILLED"
    assert orphan.data.tags["fail_reason"] == failed.user_attrs["fail_reason"]
    print(f"the worker gave up {gave_up:.1f} s after the server was lost")


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (the shared one on :5432 is never restarted)."""

    def __init__(self, folder: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins or not shutil.which("runuser"):
            pytest.skip("no PostgreSQL binaries or runuser to start a private cluster")
        self.bin, self.folder, self.port = Path(bins[-1]), folder, _free_port()
        shutil.chown(folder, "postgres")
        self.pg("initdb", "-D", f"{folder}/data", "-A", "trust", "-U", "postgres")
        self.start()
        self.pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "optuna")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/optuna"

    def pg(self, tool: str, *args: str) -> None:
        """A PostgreSQL tool as the postgres user (initdb refuses root)."""
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self.pg("pg_ctl", "-D", f"{self.folder}/data", "-l", f"{self.folder}/pg.log", "-o", opts,
                "-w", "start")  # fmt: skip

    def stop(self) -> None:
        """`-m fast`: every session is ended, a statement in flight fails in its client."""
        self.pg("pg_ctl", "-D", f"{self.folder}/data", "-m", "fast", "-w", "stop")

    def connect(self, autocommit: bool = True):  # noqa: ANN201 - a psycopg2 connection
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="optuna")
        con.autocommit = autocommit
        return con

    @contextlib.contextmanager
    def holding(self, statement: str) -> Iterator[int]:
        """`statement` run in a transaction held open until the block ends (or the server stops):
        a lock the workers' statements then wait on. Yields the holding session's pid."""
        con = self.connect(autocommit=False)
        try:
            with con.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                (pid,) = cur.fetchone()
                cur.execute(statement)
            yield pid
        finally:
            with contextlib.suppress(Exception):  # gone with the server
                con.close()

    def blocked_statement(self, holder: int, timeout: float = 120) -> str:
        """The statement waiting on the lock `holder` holds: one in flight, not yet answered.

        Only a wait on that lock counts, so the statement named is the one the server stops
        under: taking whatever statement waited on any lock once named a SELECT where the
        INSERT was expected, on a loaded machine (pg_blocking_pids says who holds it up).
        """
        waits = "SELECT query, pg_blocking_pids(pid) FROM pg_stat_activity"
        waits += " WHERE wait_event_type = 'Lock'"
        deadline = time.monotonic() + timeout
        with contextlib.closing(self.connect()) as con, con.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute(f"{waits} AND %s = ANY(pg_blocking_pids(pid))", (holder,))
                row = cur.fetchone()
                if row:
                    return row[0]
                time.sleep(0.05)
            cur.execute(waits)
            others = cur.fetchall()
        pytest.fail(f"no statement waited on session {holder}'s lock in {timeout:.0f} s: {others}")


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """Started in a folder the postgres user can reach (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
    try:
        cluster = PrivatePostgres(folder)
        try:
            yield cluster
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                cluster.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_postgres_restarted_mid_sweep_loses_nothing(private_pg, tmp_path):
    """Two workers on a study in PostgreSQL; the database stops mid-trial and is back 8 s later.
    Each worker reconnects with backoff (storage._connect_patiently): no trial failed for it."""
    store = tmp_path / "store"
    # No heartbeat reaches the database while it is down: an outage longer than the grace period
    # makes live trials look dead (failed as stale when it is back; docs/faults.md), so 60 s here.
    args = ["experiment=tiny", "search.heartbeat_interval=1", "search.grace_period=60"]
    # 150 epochs: worker 1 starts ~12 s after worker 0 on a slow machine; at 60 worker 0
    # alone could finish the study first (seen here, 3 runs side by side)
    args += ["search.jobs=2", "search.n_trials=6", "trainer.epochs=150"]
    proc = _popen(store, *args, f"search.storage={private_pg.url}", merge=True)
    try:
        _wait_all_busy(private_pg.url, 2, [proc])  # both mid-trial: worker 1 joins later
        private_pg.stop()
        time.sleep(8)
        private_pg.start()
        out, _ = proc.communicate(timeout=600)
    finally:
        stop(proc, grace=5)
    assert proc.returncode == 0, out
    study = optuna.load_study(study_name="sine-mlp", storage=private_pg.url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 6, states
    failed = [t.user_attrs for t in study.trials if t.state.name == "FAIL"]
    assert all(not_the_services_fault(a.get("fail_reason", "")) for a in failed), failed
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sine").experiment_id])
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert len([r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]) == 1


def _composed(store: Path, *args: str):  # noqa: ANN202 - a DictConfig
    """The checked config a worker started with these overrides runs with."""
    from sweep.api import compose

    GlobalHydra.instance().clear()
    return compose(*args, f"paths.store={store}")


PG_TRIAL = ["experiment=tiny", "search.heartbeat_interval=1", "search.grace_period=10"]


@pytest.mark.slow
def test_postgres_down_past_the_grace_period_fails_a_live_trial_once_and_its_worker_goes_on(
    private_pg, tmp_path
):
    """The database stops mid-trial for longer than search.grace_period. When it is back,
    another worker's stale check comes first (played here by the test, which reconnects at
    once; the worker's own reconnects back off 1, 2, 4, 8, 15 s) and fails the live trial,
    queueing its retry. Its worker notices its trial is finished, closes the run with why and
    goes on: exactly the target, nothing made twice."""
    from sweep.study.study import study_storage
    from sweep.tracking import make_tracker

    store = tmp_path / "store"
    args = [*PG_TRIAL, "search.n_trials=3", "trainer.epochs=200"]
    args += [f"search.storage={private_pg.url}"]
    proc = _popen(store, *args, merge=True)
    try:
        _wait_all_busy(private_pg.url, 1, [proc])
        cfg = _composed(store, *args)
        other = optuna.load_study(
            study_name="sine-mlp", storage=study_storage(cfg, make_tracker(cfg.tracking))
        )
        private_pg.stop()
        time.sleep(20)  # > grace 10 s; the worker's next reconnect is due ~30 s after the stop
        private_pg.start()
        optuna.storages.fail_stale_trials(other)  # what another worker's next_trial does first
        stale = [t for t in other.trials if t.state.name == "FAIL"]
        out, _ = proc.communicate(timeout=600)
    finally:
        stop(proc, grace=5)
    assert len(stale) == 1, "the worker beat before the stale check: no trial was stale"
    lost = stale[0].number
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "UpdateFinishedTrialError" not in out, out
    assert f"trial {lost}" in out and "failed as stale by another worker" in out, out

    trials = optuna.load_study(study_name="sine-mlp", storage=private_pg.url).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 3, states
    assert not [s for s in states if s in ("RUNNING", "WAITING")], states
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost]
    assert retry.state.name in ("COMPLETE", "PRUNED") and retry.params == trials[lost].params
    runs = _client_runs(f"sqlite:///{store}/mlflow.db", "sine")
    _one_record_per_run(trials, runs)
    run = next(r for r in runs if r.info.run_id == trials[lost].user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert run.data.tags["fail_reason"].startswith("failed as stale by another worker")


@pytest.mark.slow
def test_a_statement_in_flight_when_postgres_stops_is_run_again_only_if_repeatable(private_pg):
    """A statement waiting on a lock when the server stops fails in its client. A read, or a
    write that sets a key to a value, runs again once the server is back; a write that moves a
    trial's state does not (it may have committed before its connection dropped: a WAITING
    trial claimed twice, or a `tell` taken for another worker's)."""
    from sweep.study.storage import make_storage

    cfg = OmegaConf.create(
        {"search": {"storage": private_pg.url, "heartbeat_interval": 1, "grace_period": 10}}
    )
    storage = make_storage(cfg)
    study = optuna.create_study(study_name="in-flight", storage=storage)
    trial = study.ask()
    row = f"SELECT * FROM trials WHERE trial_id = {trial._trial_id} FOR UPDATE"

    def in_flight(lock: str, call, *args):  # noqa: ANN001, ANN202
        """`call(*args)` started while `lock` is held, the server stopped under it, restarted."""
        with ThreadPoolExecutor(1) as pool, private_pg.holding(lock) as holder:
            future = pool.submit(call, *args)
            statement = private_pg.blocked_statement(holder)
            private_pg.stop()
            private_pg.start()
            return statement, future.exception(timeout=120) or future.result()

    statement, trials = in_flight(
        "LOCK TABLE trials IN ACCESS EXCLUSIVE MODE", storage.get_all_trials, study._study_id
    )
    assert statement.lstrip().startswith("SELECT") and "FOR UPDATE" not in statement
    assert [t.number for t in trials] == [trial.number]

    statement, _ = in_flight(row, storage.set_trial_user_attr, trial._trial_id, "k", "v")
    assert statement.lstrip().startswith("INSERT"), statement
    assert storage.get_trial(trial._trial_id).user_attrs == {"k": "v"}

    statement, error = in_flight(
        row, storage.set_trial_state_values, trial._trial_id, TrialState.COMPLETE, [1.0]
    )
    assert "FOR UPDATE" in statement
    assert isinstance(error, optuna.exceptions.StorageInternalError), error
    assert storage.get_trial(trial._trial_id).state == TrialState.RUNNING
    storage.engine.dispose()


def _communicate(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """`proc.communicate`, or, when it does not exit in time, a failure holding every thread's
    stack (faulthandler dumps them on SIGABRT: conftest.clean_env sets PYTHONFAULTHANDLER). Once
    beside a CPU hog and the whole suite, this worker did not exit; nothing said where it was."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"no exit within {timeout:.0f} s; its threads:\n{err[-8000:]}\n{out[-2000:]}")


@pytest.mark.slow
def test_a_tell_in_flight_when_postgres_stops_is_one_line_and_the_next_start_retries_it(
    private_pg, tmp_path
):
    """The worker's `tell` (not repeatable: see the test above) waits on a row lock when the
    database stops: one line, nothing more written (the trial stays RUNNING, though its run
    was closed FINISHED just before). The same command, once the database is back, fails the
    trial by its missing heartbeat, marks that run KILLED and runs the trial again."""
    store = tmp_path / "store"
    args = [*PG_TRIAL, "search.n_trials=3", "trainer.epochs=200"]
    args += [f"search.storage={private_pg.url}"]
    proc = _popen(store, *args)
    try:
        _wait_all_busy(private_pg.url, 1, [proc])
        (lost,) = [
            t
            for t in optuna.load_study(study_name="sine-mlp", storage=private_pg.url).trials
            if t.state.name == "RUNNING"
        ]
        # FOR SHARE: the trial's epochs, attributes and heartbeats go on; its tell waits
        with private_pg.holding(
            f"SELECT * FROM trials WHERE trial_id = {lost._trial_id} FOR SHARE"
        ) as holder:
            tell = private_pg.blocked_statement(holder, timeout=300)
            private_pg.stop()
        out, err = _communicate(proc, timeout=120)
    finally:
        stop(proc, grace=5)
    assert "FOR UPDATE" in tell and "FROM trials" in tell, tell
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err, err
    (line,) = _errors(err)
    assert line.startswith("error: the study's storage postgresql://") and "mid-statement" in line
    # PostgreSQL's words depend on where the statement was when it stopped
    assert "terminating connection" in line or "closed the connection" in line, line
    assert "the study's storage does not answer" in out, out

    private_pg.start()
    left = optuna.load_study(study_name="sine-mlp", storage=private_pg.url).trials[lost.number]
    assert left.state.name == "RUNNING"  # nothing more was written
    runs = {r.info.run_id: r for r in _client_runs(f"sqlite:///{store}/mlflow.db", "sine")}
    assert runs[lost.user_attrs["mlflow_run_id"]].info.status == "FINISHED"
    again = run_cli("sweep", *args, store=store)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = optuna.load_study(study_name="sine-mlp", storage=private_pg.url).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 3, states
    assert trials[lost.number].state.name == "FAIL"
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
    assert retry.state.name in ("COMPLETE", "PRUNED") and retry.params == lost.params
    runs = _client_runs(f"sqlite:///{store}/mlflow.db", "sine")
    _one_record_per_run(trials, runs)
    run = next(r for r in runs if r.info.run_id == lost.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED", run.data.tags  # the retry is the trial's record


def test_a_sweep_that_cannot_open_leaves_no_worker_behind(tmp_path):
    """`JOBS=2` spawns worker 1 before the study opens; a refusal there stops it, silently."""
    import multiprocessing

    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(tracking).search_experiments()
    code, err = _sweep_in_process(
        f"paths.store={tmp_path}", f"search.storage={tracking}", "search.jobs=2"
    )
    assert code == 2 and err.count("\n") == 1 and "MLflow's tracking database" in err, err
    assert multiprocessing.active_children() == []


def test_a_trial_that_never_beat_is_failed_and_retried_after_the_grace_period(tmp_path):
    """A worker lost between asking and its first heartbeat (or a creation lost with the
    database) leaves a RUNNING trial Optuna's stale check skips; it must not hold a slot."""
    from sweep.study.study import LOST_BEFORE_BEAT, fail_stale

    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path}/optuna.db",
        heartbeat_interval=1,
        grace_period=1,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=1
        ),
    )
    study = optuna.create_study(storage=storage)
    lost, alive = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), study.ask()
    storage.record_heartbeat(alive._trial_id)
    fail_stale(study)
    assert [t.state.name for t in study.trials] == ["RUNNING", "RUNNING"]  # within the grace
    time.sleep(1.5)
    storage.record_heartbeat(alive._trial_id)
    fail_stale(study)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "RUNNING", "WAITING"], states  # the lost one failed and queued
    assert study.trials[0].user_attrs["fail_reason"] == LOST_BEFORE_BEAT
    assert study.trials[2].params == study.trials[0].params == lost.params
