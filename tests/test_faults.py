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
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweep.runner import main
from sweep.tracking import stop
from tests.test_distributed import (  # noqa: F401 - pg is a fixture
    _free_port,
    _wait_all_busy,
    _worker,
    pg,
    start_server,
    tree_pids,
)
from tests.test_reliability import FAST, _popen, _study, _wait_for_running_trial

SMALL = ["search.n_trials=3", "trainer.epochs=2"]


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
    """Two workers; the server is killed while trials run and comes back on the same port
    ~20 s later. MLflow's client retries with backoff, so no trial is failed for it."""
    port = _free_port()
    servers = [start_server(pg.url("mlflow"), port, tmp_path / "s1")]
    store = tmp_path / "store"
    # its own experiment: this module's other tests log to the same MLflow database
    args = [*FAST, "search.jobs=2", "search.n_trials=6", "trainer.epochs=60"]
    args += ["tracking.experiment=restart"]
    proc = _popen(store, *args, f"tracking.uri={servers[0].url}", merge=True)
    try:
        _wait_for_running_trial(store, after=1)
        for pid in tree_pids(servers[0].proc.pid):  # the server's machine or container is lost
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        servers[0].proc.wait()
        down = time.monotonic()
        time.sleep(10)
        servers.append(start_server(pg.url("mlflow"), port, tmp_path / "s2"))
        downtime = time.monotonic() - down
        out, _ = proc.communicate(timeout=600)
        client = MlflowClient(servers[1].url)
        runs = client.search_runs([client.get_experiment_by_name("restart").experiment_id])
    finally:
        for p in (proc, *(s.proc for s in servers)):
            stop(p, grace=30)
    assert proc.returncode == 0, out
    study = _study(store)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 6, states
    assert "RUNNING" not in states, states
    failed = [t.user_attrs for t in study.trials if t.state.name == "FAIL"]
    assert all(not_the_services_fault(a.get("fail_reason", "")) for a in failed), failed
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert len([r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]) == 1
    by_id = {r.info.run_id: r for r in runs}
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    for t in finished:  # every finished trial's record is complete: metrics and status
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert run.info.status in ("FINISHED", "KILLED") and "val_mse" in run.data.metrics
    with_runs = [t for t in study.trials if "mlflow_run_id" in t.user_attrs]
    assert len(runs) == len(with_runs) + 1, [r.info.run_name for r in runs]  # none made twice
    print(f"server down {downtime:.0f} s")


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
        self.pg("pg_ctl", "-D", f"{self.folder}/data", "-m", "fast", "-w", "stop")


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
    Each worker reconnects with backoff (study._connect_patiently): no trial failed for it."""
    store = tmp_path / "store"
    # No heartbeat reaches the database while it is down: an outage longer than the grace period
    # makes live trials look dead (failed as stale when it is back; docs/faults.md), so 60 s here.
    args = ["experiment=tiny", "search.heartbeat_interval=1", "search.grace_period=60"]
    args += ["search.jobs=2", "search.n_trials=6", "trainer.epochs=60"]
    proc = _popen(store, *args, f"search.storage={private_pg.url}", merge=True)
    try:
        _wait_all_busy(private_pg.url, 1, [proc])
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
