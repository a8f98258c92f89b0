"""Your own problem from config: a CSV, scikit-learn's data sets, a user's model and data."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import optuna
import pytest

from sweep.cli import runner
from sweep.config.checks import prepare
from sweep.config.space import objectives
from sweep.core import console
from sweep.core.errors import ConfigError
from sweep.study.study import ranked_trials
from sweep.tracking import Reader
from sweep.train.data import dataset_for

TRUST = "trusted_modules=[tests.problem_models]"


def write_csv(path: Path, n: int = 240, seed: int = 0) -> Path:
    """Three features and two targets (multi-output regression): u = a + 2b, v = sin(c)."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(5, 2, n), rng.normal(-1, 3, n), rng.uniform(-3, 3, n)
    rows = ["a,b,c,u,v"] + [
        f"{x:.6f},{y:.6f},{z:.6f},{x + 2 * y:.6f},{math.sin(z):.6f}"
        for x, y, z in zip(a, b, c, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def csv_args(path: Path) -> list[str]:
    return ["data=csv", f"data.path={path}", "data.targets=[u,v]", "data.name=uv"]


# --------------------------------------------------------------------------- data, fast


def test_csv_split_is_seeded_and_scaled_on_the_training_split_only(compose_cfg, tmp_path):
    cfg = prepare(compose_cfg(*csv_args(write_csv(tmp_path / "uv.csv"))))
    data, again = dataset_for(cfg), dataset_for(cfg)
    assert (data.input_dim, data.output_dim, data.task) == (3, 2, "regression")
    assert len(data.train.x) + len(data.val.x) + len(data.test.x) == 240
    assert data.val.digest() == again.val.digest()
    np.testing.assert_allclose(data.train.x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.train.y.std(axis=0), 1, atol=1e-4)
    assert np.abs(data.val.x.mean(axis=0)).max() > 1e-3  # not refitted on validation
    assert data.source["file_sha256"] and cfg.trainer.loss == "mse"


def test_scikit_learn_data_sets_and_their_defaults(compose_cfg):
    digits = prepare(compose_cfg("data=digits"))
    d = dataset_for(digits)
    assert (d.input_dim, d.output_dim, d.n_classes, d.task) == (64, 10, 10, "classification")
    assert sum(len(s.x) for s in (d.train, d.val, d.test)) == 1797
    assert digits.trainer.loss == "crossentropy"
    assert objectives(digits) == [("val_accuracy", "maximize")]
    assert digits.search.study_name == "digits-mlp" and digits.tracking.experiment == "digits"
    diabetes = dataset_for(prepare(compose_cfg("data=diabetes")))
    assert (diabetes.input_dim, diabetes.output_dim, len(diabetes.train.x)) == (10, 1, 310)
    sine = prepare(compose_cfg())
    assert objectives(sine) == [("val_mse", "minimize")] and sine.search.study_name == "sine-mlp"


def test_a_user_data_function_returning_arrays(compose_cfg):
    cfg = prepare(
        compose_cfg(
            TRUST,
            "data._target_=tests.problem_models.plane",
            "~data.x_min",
            "~data.x_max",
            "~data.step",
            "~data.n_val",
            "~data.n_test",
            "~data.seed",
            "+data.n=200",
        )
    )
    assert (dataset_for(cfg).input_dim, len(dataset_for(cfg).train.x)) == (2, 140)


def test_objectives_can_be_set_and_ranked_trials_follow_the_direction(compose_cfg):
    cfg = prepare(
        compose_cfg("data=diabetes", "search.objectives=[{name: val_mae, direction: minimize}]")
    )
    assert objectives(cfg) == [("val_mae", "minimize")]
    study = optuna.create_study(directions=["maximize"])
    for value in (0.2, 0.9, 0.5):
        study.add_trial(optuna.trial.create_trial(value=value))
    assert [t.value for t in ranked_trials(study, 3)] == [0.9, 0.5, 0.2]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data=csv", "data.path=/nowhere.csv", "data.targets=[u]"],
            "data: path='/nowhere.csv': no such file",
        ),
        (["data.targets=[w]"], "data: uv.csv has no column 'w'; its columns: a, b, c, u, v"),
        (["BAD"], "data: uv.csv line 3, column 'b': 'x' is not a number"),
        (
            ["data=digits", "trainer.loss=mse"],
            "trainer.loss='mse' does not fit a classification problem",
        ),
        (
            ["data=digits", "search.objectives=[{name: val_mse, direction: minimize}]"],
            "search.objectives[0].name='val_mse' is not a metric of a classification run",
        ),
        (
            ["data._target_=tests.problem_models.plane"],
            "data._target_='tests.problem_models.plane' is not allowed",
        ),
        (["trusted_modules=[os]"], "trusted_modules: 'os' is part of Python or sweep itself"),
        (
            ["data.task=clustering"],
            "data.task='clustering' is not one of: regression, classification",
        ),
    ],
)
def test_bad_problems_are_one_line_before_tensorflow(compose_cfg, tmp_path, overrides, message):
    path = write_csv(tmp_path / "uv.csv")
    if overrides == ["BAD"]:
        lines = path.read_text().splitlines()
        lines[2] = lines[2].replace(lines[2].split(",")[1], "x", 1)
        path.write_text("\n".join(lines))
        overrides = []
    base = csv_args(path) if not any(o.startswith("data=") for o in overrides) else []
    with pytest.raises(ConfigError) as info:
        prepare(compose_cfg(*base, *overrides))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- end to end


def plots_of(store: Path, run) -> set[str]:  # noqa: ANN001
    client = Reader(f"sqlite:///{store}/mlflow.db").client
    return {a.path for a in client.list_artifacts(run.info.run_id, "plots")}


def metrics_of(store: Path, kind: str) -> list:
    reader = Reader(f"sqlite:///{store}/mlflow.db")
    runs = reader.client.search_runs(
        [e.experiment_id for e in reader.client.search_experiments()],
        filter_string=f"tags.`sweep.kind` = '{kind}'",
    )
    return runs


@pytest.mark.slow
def test_digits_sweep_maximises_accuracy_with_a_confusion_matrix_and_a_champion(tmp_path, capsys):
    args = [
        "sweep",
        "data=digits",
        "search.n_trials=3",
        "trainer.epochs=3",
        "search/pruner=none",
        f"paths.store={tmp_path}",
    ]
    assert runner.main(args) == 0
    out = capsys.readouterr().out
    assert "registered models:/digits-mlp@champion" in out and "best: trial" in out
    reader = Reader(f"sqlite:///{tmp_path}/mlflow.db")
    trials = metrics_of(tmp_path, "trial")
    best = max(trials, key=lambda r: r.data.metrics["val_accuracy"])
    shown = console.fmt_metric("val_accuracy", best.data.metrics["val_accuracy"])
    assert f"val_accuracy={shown}" in out.split("best: trial")[1]
    assert {"plots/confusion.png", "plots/loss.png"} <= plots_of(tmp_path, best)
    assert "scaling.json" in reader.artifact_names(best)
    assert {"train_accuracy", "val_crossentropy", "test_accuracy"} <= set(best.data.metrics)


@pytest.mark.slow
def test_diabetes_sweep_and_a_user_model_swept_by_its_own_keywords(tmp_path, capsys):
    args = [
        "sweep",
        "data=diabetes",
        TRUST,
        "~model",
        "+model._target_=tests.problem_models.wide",
        "+model.units=8",
        "+model.dropout=0.0",
        "~search.space.model",
        "+search.space.model.units='choice(4, 8)'",
        "search.n_trials=2",
        "trainer.epochs=2",
        "search/pruner=none",
        f"paths.store={tmp_path}",
    ]
    assert runner.main(args) == 0, capsys.readouterr().err
    trials = metrics_of(tmp_path, "trial")
    assert {r.data.params["model.units"] for r in trials} <= {"4", "8"}
    best = min(trials, key=lambda r: r.data.metrics["val_mse"])
    assert {"plots/prediction.png", "plots/loss.png"} <= plots_of(tmp_path, best)
    assert "registered models:/diabetes-mlp@champion" in capsys.readouterr().out
    assert (
        runner.main(
            [
                "predict",
                "--model",
                "diabetes-mlp",
                "--store",
                str(tmp_path),
                "--csv",
                str(diabetes_csv(tmp_path)),
            ]
        )
        == 0
    )
    assert "row" in capsys.readouterr().out
    argv = ["predict", "--model", "diabetes-mlp", "--store", str(tmp_path), "--x", "0.5", "1"]
    assert runner.main(argv) == 2  # a 10-input model: one line naming its shape, no traceback
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "input shape (None, 10)" in err[0], err


def diabetes_csv(tmp_path: Path) -> Path:
    from sklearn.datasets import load_diabetes

    x, _ = load_diabetes(return_X_y=True)
    path = tmp_path / "patients.csv"
    path.write_text(
        "\n".join(
            [",".join(f"f{i}" for i in range(10))] + [",".join(map(str, row)) for row in x[:3]]
        )
    )
    return path


@pytest.mark.slow
def test_multi_output_csv_baseline_then_its_file_changes_and_rerun_says_so(tmp_path, capsys):
    path = write_csv(tmp_path / "uv.csv")
    store = tmp_path / "store"
    args = [
        "baseline",
        *csv_args(path),
        "trainer.epochs=2",
        "trainer.batch_size=32",
        f"paths.store={store}",
    ]
    assert runner.main(args) == 0
    (run,) = metrics_of(store, "single")
    assert {"train_mse", "val_mse", "test_mse", "val_mae"} <= set(run.data.metrics)
    assert runner.main(["rerun", run.info.run_id, "--store", str(store)]) == 0
    write_csv(path, seed=1)
    capsys.readouterr()
    assert runner.main(["rerun", run.info.run_id, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "which has changed since" in err and "cannot reproduce" in err


def test_a_model_xla_cannot_compile_falls_back_to_fit(compose_cfg):
    from keras.optimizers import SGD

    from sweep.train.loop import configure_tensorflow, reset_state, train
    from tests.problem_models import numpy_inside

    cfg = prepare(compose_cfg("experiment=tiny"))
    data = dataset_for(cfg)
    configure_tensorflow(None, deterministic=True)
    reset_state(0)
    model = numpy_inside(1, 1)
    result = train(model, SGD(0.05), data, 3, 100, 0, jit_compile=True)
    assert result.fallback and len(result.history) == 3
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert math.isfinite(result.val_mse)


# --------------------------------------------------------------------------- images, sequences

WIDE = ["~model", "+model._target_=tests.problem_models.wide"]


def test_a_model_whose_input_does_not_fit_the_data_is_one_line_before_training(tmp_path, capsys):
    args = [
        "baseline",
        "data=digits_images",
        TRUST,
        *WIDE,
        "tracking=none",
        f"paths.store={tmp_path}",
    ]
    assert runner.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: model wide_16 takes inputs of shape (64,), but data digits_images has (8, 8, 1) "
        "(a builder with an `input_shape` argument gets the data's own)"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "problem",
    [["data=digits_images", "model=cnn"], ["data=sine_sequence", "model=lstm"]],
    ids=["cnn", "lstm"],
)
def test_an_image_or_sequence_baseline_reruns_identical_with_its_shapes_recorded(
    tmp_path, capsys, problem
):
    args = ["baseline", *problem, "trainer.epochs=2", f"paths.store={tmp_path}"]
    assert runner.main(args) == 0, capsys.readouterr().err
    (run,) = metrics_of(tmp_path, "single")
    reader = Reader(f"sqlite:///{tmp_path}/mlflow.db")
    record = json.loads(reader.artifact_text(run, "replay.json"))
    expected = (
        {"input": [8, 8, 1], "output": 10}
        if "model=cnn" in problem
        else {"input": [32, 1], "output": 1}
    )
    assert record["shapes"] == expected
    shown = "plots/misclassified.png" if "model=cnn" in problem else "plots/forecast.png"
    assert shown in plots_of(tmp_path, run)
    capsys.readouterr()
    assert runner.main(["rerun", run.info.run_id, "--store", str(tmp_path)]) == 0
    assert re.search(r"^rerun [0-9a-f]{32}: IDENTICAL$", capsys.readouterr().out, re.M)
