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
    image = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    with pytest.raises(ConfigError) as err:  # its last axis is 1 too: not one input per row
        one_input_rows(image, x, "m")
    assert "takes 64 inputs per row (input shape (None, 8, 8, 1))" in str(err.value)


def test_flat_csv_rows_take_the_models_input_shape_or_fail_in_one_line():
    import keras

    from sweep.core.errors import ConfigError
    from sweep.study.registry import as_model_inputs

    image = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    rows = np.arange(128, dtype=np.float32).reshape(2, 64)
    x = as_model_inputs(rows, image, "--csv d.csv")
    assert x.shape == (2, 8, 8, 1) and x[1, 2, 3, 0] == 64 + 2 * 8 + 3  # row-major, as flattened
    assert np.asarray(image(x)).shape == (2, 1)
    with pytest.raises(ConfigError) as err:
        as_model_inputs(rows[:, :63], image, "--csv d.csv")
    assert str(err.value) == (
        "--csv d.csv: 63 input columns; the model takes 64 (input shape (8, 8, 1), flattened "
        "row-major)"
    )
    table = keras.Sequential([keras.Input((10,)), keras.layers.Dense(1)])
    with pytest.raises(ConfigError, match=r"^--csv d.csv: 64 input columns; the model takes 10$"):
        as_model_inputs(rows, table, "--csv d.csv")


def test_csv_rows_are_scaled_per_pixel_in_the_models_shape_and_unscaled_after():
    import keras

    from sweep.study.registry import as_model_inputs, predicted_rows

    summed = keras.Sequential(
        [keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(1, use_bias=False)]
    )
    summed.layers[-1].set_weights([np.ones((4, 1))])  # the sum of the scaled pixels
    scaling = {  # data.standardize=feature on images: a mean and std per pixel, [2, 2, 1]
        "x_mean": [[[1.0], [2.0]], [[3.0], [4.0]]],
        "x_std": [[[1.0], [1.0]], [[1.0], [0.5]]],
        "y_mean": [5.0],
        "y_std": [2.0],
    }
    x = as_model_inputs(np.array([[1, 2, 3, 4], [2, 3, 4, 5]], np.float32), summed, "--csv")
    text = predicted_rows(summed, x, "regression", scaling, ["next"])
    assert [line.split() for line in text.splitlines()] == [
        ["row", "next"],
        ["0", "5"],  # every pixel at its mean: 0, unscaled to y_mean
        ["1", "15"],  # 1 + 1 + 1 + 2 = 5 standard deviations: 5 * 2 + 5
    ]


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


def _models_by_run(client: MlflowClient, run_id: str) -> list:
    run = client.get_run(run_id)
    return client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )


@pytest.mark.slow
def test_trials_keep_a_keras_file_and_only_registered_ones_a_full_mlflow_model(
    tiny_sweep_store: Path,
):
    uri = f"sqlite:///{tiny_sweep_store}/mlflow.db"
    study = optuna.load_study(
        study_name="sine-mlp", storage=f"sqlite:///{tiny_sweep_store}/optuna.db"
    )
    client = MlflowClient(uri)
    champion = client.get_model_version_by_alias("sine-mlp", "champion").run_id
    for trial in study.trials:
        if trial.state.name not in ("COMPLETE", "PRUNED"):
            continue
        run_id = trial.user_attrs["mlflow_run_id"]
        assert "model.keras" in {a.path for a in client.list_artifacts(run_id)}
        assert bool(_models_by_run(client, run_id)) == (run_id == champion), trial.number


@pytest.mark.slow
def test_any_trial_registers_from_its_keras_file_with_the_same_weights(tmp_path: Path):
    """api.register_run on a trial that is not the champion: a full MLflow model is logged from
    its `.keras` file and the alias loads the very weights the report loads from the run."""
    from sweep import api
    from sweep.tracking import load_alias, load_run_model
    from tests.conftest import TINY_SWEEP, run_cli

    store = tmp_path / "store"  # its own sweep: the shared one is never changed
    out = run_cli(*TINY_SWEEP, store=store)
    assert out.returncode == 0, out.stdout + out.stderr
    uri = f"sqlite:///{store}/mlflow.db"
    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{store}/optuna.db")
    champion = study.best_trial.number
    other = next(t for t in study.trials if t.state.name == "COMPLETE" and t.number != champion)
    run_id = other.user_attrs["mlflow_run_id"]
    client = MlflowClient(uri)
    assert not _models_by_run(client, run_id)
    version = api.register_run(run_id, "hand-picked", f"paths.store={store}")
    assert _models_by_run(client, run_id)
    registered, mv = load_alias(uri, "sine-mlp", "hand-picked")
    assert str(mv.version) == version and mv.run_id == run_id
    x = np.linspace(-6, 6, 50, dtype=np.float32).reshape(-1, 1)
    kept = load_run_model(uri, run_id)
    assert np.array_equal(np.asarray(registered(x)), np.asarray(kept(x)))
    assert api.register_run(run_id, "again", f"paths.store={store}") == version  # no 2nd model
    assert len(_models_by_run(client, run_id)) == 1


def test_a_run_made_before_keras_files_loads_and_registers_from_its_mlflow_model(tmp_path: Path):
    """Old runs logged a full MLflow model and no `model.keras`: they still load and register."""
    import keras

    from sweep.tracking import Tracker, load_alias, load_run_model, register

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "sine", str(tmp_path / "artifacts"))
    tracker.setup()
    run = tracker.start_run("old")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    run.log_model(model, np.zeros((2, 1), np.float32), [])
    run.end()
    assert "model.keras" not in {a.path for a in tracker.client.list_artifacts(run.run_id)}
    x = np.linspace(-1, 1, 7, dtype=np.float32).reshape(-1, 1)
    assert np.array_equal(np.asarray(load_run_model(tracker.uri, run.run_id)(x)), model(x))
    register(tracker.uri, "old-model", "champion", run.run_id, {})
    loaded, _ = load_alias(tracker.uri, "old-model", "champion")
    assert np.array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    assert len(_models_by_run(tracker.client, run.run_id)) == 1  # nothing promoted twice


@pytest.mark.parametrize("named", [False, True])
def test_predict_ms_is_measured_only_when_an_objective_names_it(tmp_path: Path, named: bool):
    from sweep import api

    overrides = ["experiment=tiny", "trainer.epochs=2", f"paths.store={tmp_path}"]
    if named:
        overrides.append(
            "search.objectives=[{name:val_mse,direction:minimize},"
            "{name:predict_ms,direction:minimize}]"
        )
    run_id = api.baseline(*overrides).run_id
    metrics = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(run_id).data.metrics
    assert ("predict_ms" in metrics) == named
    assert {"val_mse", "n_params", "train_seconds"} <= set(metrics)
