"""The study's best model in the MLflow registry: it loads with MLflow's own API and predicts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import mlflow
import mlflow.keras
import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweep.study.registry import prediction_table
from sweep.train.data import make_dataset
from tests.conftest import sweep_cmd


def predict_cli(*args: str) -> subprocess.CompletedProcess:
    return sweep_cmd("predict", *args, timeout=300)


def test_prediction_table_shows_error_against_sin():
    text = prediction_table(np.array([0.0, np.pi / 2]), np.array([0.1, 0.9]))
    lines = text.splitlines()
    assert lines[1].split() == ["0.000", "0.1000", "0.0000", "+0.1000"]
    assert lines[2].split() == ["1.571", "0.9000", "1.0000", "-0.1000"]
    assert lines[-1] == "MSE over these 2 points: 1.000e-02"


@pytest.mark.parametrize(
    ("x", "given"), [([0.5, 1.0], "--x gives 2 values"), (None, "without --x")]
)
def test_inputs_of_the_wrong_width_name_the_models_input_shape(x, given):
    import keras

    from sweep.core.errors import ConfigError
    from sweep.study.registry import one_input_rows

    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    with pytest.raises(ConfigError) as err:
        one_input_rows(model, x, "models:/m@champion")
    assert str(err.value).startswith(given) and "input shape (None, 5)" in str(err.value)
    assert "--csv FILE" in str(err.value) and "\n" not in str(err.value)
    sine = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    assert one_input_rows(sine, x, "m").shape == (2 if x else 13,)


def test_predict_without_a_store_is_one_line(tmp_path):
    out = predict_cli("--store", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith("error: no MLflow store at") and out.stderr.count("\n") == 1


@pytest.mark.slow
def test_champion_is_the_best_trial_and_reproduces_its_validation_error(tiny_sweep_store: Path):
    uri = f"sqlite:///{tiny_sweep_store}/mlflow.db"
    study = optuna.load_study(
        study_name="sine-mlp", storage=f"sqlite:///{tiny_sweep_store}/optuna.db"
    )
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("sine-mlp", "champion")
    assert version.tags["trial"] == str(study.best_trial.number)
    assert version.run_id == study.best_trial.user_attrs["mlflow_run_id"]

    params = client.get_run(version.run_id).data.params
    data = make_dataset(
        *(float(params[f"data.{k}"]) for k in ("x_min", "x_max", "step")),
        *(int(params[f"data.{k}"]) for k in ("n_val", "n_test", "seed")),
    )
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.keras.load_model("models:/sine-mlp@champion")
    finally:
        mlflow.set_tracking_uri(previous)
    pred = np.asarray(model(data.val.x, training=False))
    val_mse = float(np.mean((pred - data.val.y) ** 2))
    assert val_mse == pytest.approx(study.best_value, rel=1e-4)


@pytest.mark.slow
def test_predict_prints_x_prediction_sin_and_error(tiny_sweep_store: Path):
    out = predict_cli("--store", str(tiny_sweep_store), "--x", "0.5", "1.0")
    assert out.returncode == 0, out.stderr
    header = r"models:/sine-mlp@champion = version \d+ \(study sine-mlp, trial \d+"
    assert re.search(header, out.stdout), out.stdout
    rows = [line.split() for line in out.stdout.splitlines() if re.match(r"\s+[0-9.-]+\s", line)]
    assert [r[0] for r in rows] == ["0.500", "1.000"]
    for x, pred, truth, err in ((float(c) for c in r) for r in rows):
        assert truth == pytest.approx(np.sin(x), abs=1e-4)
        assert err == pytest.approx(pred - truth, abs=2e-4)
