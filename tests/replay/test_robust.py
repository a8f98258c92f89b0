"""search.champion=robust: the top trials retrained with new seeds; the best mean is champion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.cli import runner
from sweep.study.study import PARENT_ATTR, load_existing


@pytest.mark.slow
def test_robust_champion_is_the_best_mean_and_the_report_shows_it(tmp_path, capsys):
    args = [
        "experiment=tiny",
        "search/pruner=none",
        "search.n_trials=3",
        "search.champion=robust",
        "search.robust.top=2",
        "search.robust.seeds=2",
        "tracking.log_plots=false",
        f"paths.store={tmp_path}",
    ]
    assert runner.main(["sweep", *args]) == 0
    out = capsys.readouterr().out
    assert "champion (best mean over 2 new seeds): trial" in out
    study = load_existing(f"sqlite:///{tmp_path}/optuna.db", "sine-mlp")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = study.user_attrs[PARENT_ATTR]
    summary = json.loads(
        Path(client.download_artifacts(parent, "summary.json", tmp_path)).read_text()
    )
    robust_json = client.download_artifacts(parent, "robust/seed_robustness.json", tmp_path)
    robust = json.loads(Path(robust_json).read_text())
    best_mean = min(robust["configurations"], key=lambda c: c["val_mse_mean"])
    assert summary["champion"]["trial"] == best_mean["trial"]
    assert len(robust["configurations"]) == 2
    version = client.get_model_version_by_alias("sine-mlp", "champion")
    assert version.tags["trial"] == str(best_mean["trial"])
    assert version.tags["chosen_by"] == "mean over 2 seeds"
    assert client.get_run(parent).info.status == "FINISHED"

    assert runner.main(["report", *args]) == 0
    page = (tmp_path / "reports" / "sine-mlp.html").read_text()
    assert "Over new seeds" in page and "\u00b1" in page
    # The report re-registers the same champion, not the single best trial.
    assert client.get_model_version_by_alias("sine-mlp", "champion").tags["trial"] == str(
        best_mean["trial"]
    )


def test_robust_champion_needs_tracking(tmp_path, capsys):
    args = ["sweep", "experiment=tiny", "tracking=none", "search.champion=robust"]
    assert runner.main([*args, f"paths.store={tmp_path}"]) == 2
    assert "search.champion=robust retrains the top trials" in capsys.readouterr().err
