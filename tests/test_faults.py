"""Service faults a long sweep meets (docs/faults.md is the matrix; each row names its test here).

The PostgreSQL cases reuse test_distributed's throwaway role and databases (`pg`) and its
worker launcher; nothing here stops or restarts the shared server on 127.0.0.1:5432.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweep.runner import main
from sweep.tracking import stop
from tests.test_distributed import _worker, pg  # noqa: F401 - pg is a fixture

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
