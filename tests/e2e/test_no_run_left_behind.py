"""No run left behind: a worker killed exactly between a write to MLflow and the matching write
to Optuna (`worker.fault` stops it there, as a SIGKILL would) leaves no run RUNNING and none
claiming a state its trial never reached, once another worker fails its trial by heartbeat.

The study lives in a fresh database of the PostgreSQL at 127.0.0.1:5432, reached through a
`postgresql+psycopg://` URL: the driver-named form the config check once refused.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweep.core.processes import stop
from sweep.study.study import LOST
from sweep.study.worker import FAULT_ENV
from tests.conftest import ROOT, clean_env, run_cli
from tests.e2e.test_distributed import scratch_database

# Beats every second, failed as stale after 10 s of silence; a learning rate that never diverges,
# so each faulty worker reaches its fault point in its first trial.
ARGS = [
    "experiment=tiny",
    "search.n_trials=3",
    "search.heartbeat_interval=1",
    "search.grace_period=10",
    "search.space.optimizer.learning_rate='tag(log, interval(0.001, 0.01))'",
]


@pytest.fixture
def psycopg_url() -> Iterator[str]:
    """A database of this test's own, named by a `postgresql+psycopg://` URL; dropped after."""
    with scratch_database("sweep_w", scheme="postgresql+psycopg") as url:
        yield url


def _dying_worker(store: Path, url: str, point: str) -> subprocess.Popen:
    """`python -m sweep worker` that dies at `point` of its first trial."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", "worker", *ARGS, f"search.storage={url}"]
        + [f"paths.store={store}"],
        cwd=ROOT,
        env={**clean_env(), FAULT_ENV: point},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_workers_killed_between_mlflow_and_optuna_leave_no_run_behind(psycopg_url, tmp_path):
    """Window 1: dead after creating its run, before naming it on the trial (the run was left
    RUNNING under a FINISHED parent). Window 2: dead after closing its run FINISHED, before
    telling Optuna (the run was left KILLED but tagged `sweep.state=COMPLETE`)."""
    dying = [_dying_worker(tmp_path, psycopg_url, p) for p in ("run-created", "run-closed")]
    try:
        outs = [p.communicate(timeout=300)[0] for p in dying]
    finally:
        for p in dying:
            stop(p, grace=5)
    assert [p.returncode for p in dying] == [137, 137], outs
    out = run_cli("worker", *ARGS, f"search.storage={psycopg_url}", store=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr

    storage = optuna.storages.RDBStorage(psycopg_url)
    try:
        trials = optuna.load_study(study_name="sine-mlp", storage=storage).trials
    finally:
        storage.engine.dispose()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 3, states
    lost = [t for t in trials if t.state.name == "FAIL"]
    assert len(lost) == 2, states
    retried = [t.system_attrs.get("failed_trial") for t in trials if t.state.name != "FAIL"]
    assert sorted(n for n in retried if n is not None) == sorted(t.number for t in lost)
    # Window 2's trial had named its run; window 1's had not.
    closed, created = sorted(lost, key=lambda t: "mlflow_run_id" not in t.user_attrs)
    assert "mlflow_run_id" in closed.user_attrs and "mlflow_run_id" not in created.user_attrs

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sine").experiment_id])
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]
    assert parent.info.status == "FINISHED"
    for trial in (closed, created):
        (run,) = [r for r in runs if r.data.tags.get("sweep.trial") == str(trial.number)]
        assert run.info.status == "KILLED", (trial.number, run.data.tags)
        assert run.data.tags.get("sweep.state") == "FAIL", (trial.number, run.data.tags)
        assert run.data.tags["fail_reason"] == LOST
