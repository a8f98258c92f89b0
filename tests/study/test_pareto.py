"""Several objectives: a two-objective study keeps its Pareto front in Optuna, MLflow, the
registry and the report; the first objective is still pruned, by our median rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweep.cli import runner
from sweep.config.checks import prepare
from sweep.config.space import objectives
from sweep.core.errors import ConfigError
from sweep.serve.ui import SHARE_TAG, VIEW_NESTED, install_views, study_objectives
from sweep.study.study import PARENT_ATTR, load_existing
from sweep.tracking.experiments import Experiments


def test_objectives_default_to_val_mse_and_refuse_unknown_metrics(compose_cfg):
    assert objectives(prepare(compose_cfg())) == [("val_mse", "minimize")]
    pareto = prepare(compose_cfg("search=pareto"))
    assert objectives(pareto) == [("val_mse", "minimize"), ("n_params", "minimize")]
    with pytest.raises(ConfigError, match=r"search.objectives\[1\].name=.size. is not a metric"):
        prepare(compose_cfg("search=pareto", "search.objectives.1.name=size"))


@pytest.mark.slow
def test_a_two_objective_study_shows_its_front_everywhere(tmp_path, capsys):
    args = [
        "experiment=tiny",
        "search=pareto",
        "search.n_trials=6",
        "tracking.log_plots=false",
        f"paths.store={tmp_path}",
    ]
    assert runner.main(["sweep", *args]) == 0
    study = load_existing(f"sqlite:///{tmp_path}/optuna.db", "sine-mlp-pareto")
    front = sorted(t.number for t in study.best_trials)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "the median rule pruned no trial"
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = study.user_attrs[PARENT_ATTR]
    summary_path = client.download_artifacts(parent, "summary.json", str(tmp_path))
    summary = json.loads(Path(summary_path).read_text())
    assert [m["trial"] for m in summary["pareto_front"]] == front
    assert summary["objectives"] == {"val_mse": "minimize", "n_params": "minimize"}
    member = summary["pareto_front"][0]
    assert member["n_params"] == study.trials[member["trial"]].values[1]
    plots = {a.path for a in client.list_artifacts(parent, "plots")}
    assert "plots/pareto_front.png" in plots
    for number in front:
        version = client.get_model_version_by_alias("sine-mlp-pareto", f"pareto-{number}")
        assert version.run_id == study.trials[number].user_attrs["mlflow_run_id"]

    experiments = Experiments(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.get_run(parent).info.experiment_id
    objectives = study_objectives(experiments, experiment_id)
    assert objectives == [("val_mse", "minimize"), ("n_params", "minimize")]
    install_views(experiments, experiment_id)
    view = json.loads(experiments.tags(experiment_id)[f"{SHARE_TAG}{VIEW_NESTED}"])
    pareto = next(c for c in view["compareRunCharts"] if c["uuid"] == "sweep-pareto")
    assert (pareto["xaxis"]["key"], pareto["yaxis"]["key"]) == ("n_params", "val_mse")

    assert runner.main(["report", *args]) == 0
    page = (tmp_path / "reports" / "sine-mlp-pareto.html").read_text()
    assert '<section id="pareto"><h2>Pareto front</h2>' in page
    assert "<th>n_params</th>" in page
