"""End to end, as a user runs it: a tiny sweep and a baseline, then the stores read back."""

from __future__ import annotations

import re

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _runs(store):
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.get_experiment_by_name("sine")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_tiny_sweep_then_resume(tmp_path):
    out = run_cli("sweep", "experiment=tiny", "search.n_trials=4", store=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert re.search(r"\[4/4\] trial \d+", out.stdout), out.stdout
    assert "best: trial" in out.stdout

    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{tmp_path}/optuna.db")
    finished = [t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"]
    assert len(finished) == 4
    assert study.trials[0].params == {
        "model.depth": 4,
        "model.width": 20,
        "model.activation": "tanh",
        "optimizer.learning_rate": 0.01,
    }

    client, runs = _runs(tmp_path)
    parents = [r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("sweep.kind") == "trial"]
    assert len(parents) == 1 and len(children) == len(study.trials)
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    by_id = {r.info.run_id: r for r in children}
    for trial in study.trials:
        run = by_id[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["sweep.trial"] == str(trial.number)
        assert run.data.tags["sweep.state"] == trial.state.name
        expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
        assert run.info.status == expected[trial.state.name]

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    run = by_id[complete[0].user_attrs["mlflow_run_id"]]
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert run.data.metrics["val_mse"] == pytest.approx(complete[0].value)
    assert {"train_mse", "test_mse", "train_loss"} <= set(run.data.metrics)
    assert run.data.params["model.depth"] == str(complete[0].params["model.depth"])
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.txt", "replay.json", "plots"} <= files
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/prediction.png", "plots/loss.png"}
    for trial in study.trials:  # complete and pruned alike: model, plots, losses per epoch
        if trial.state.name in ("COMPLETE", "PRUNED"):
            run_id = trial.user_attrs["mlflow_run_id"]
            assert "model.keras" in {a.path for a in client.list_artifacts(run_id)}
            assert {a.path for a in client.list_artifacts(run_id, "plots")} == plots
            steps = [m.step for m in client.get_metric_history(run_id, "val_loss")]
            assert steps == list(range(1, len(trial.intermediate_values) + 1))
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in parent_files
    assert parent.data.tags["best_trial"] == str(min(complete, key=lambda t: t.value).number)

    # Same command with a larger target continues the same study under the same parent.
    out = run_cli("sweep", "experiment=tiny", "search.n_trials=6", store=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "resuming study 'sine-mlp'" in out.stdout
    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 6
    _, runs = _runs(tmp_path)
    assert len([r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]) == 1


def test_baseline_matches_the_tutorial(tmp_path):
    out = run_cli("baseline", store=tmp_path)
    assert out.returncode == 0, out.stderr
    client, runs = _runs(tmp_path)
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert 0.002 <= run.data.metrics["train_mse"] <= 0.006
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 50
    assert run.data.params["model.activation"] == "tanh"
    assert f"run {run.info.run_id}" in out.stdout


def test_tracking_none_logs_nothing(tmp_path):
    out = run_cli("sweep", "experiment=tiny", "tracking=none", "search.n_trials=2", store=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "mlflow.db").exists()
    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 2
