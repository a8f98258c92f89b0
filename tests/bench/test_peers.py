"""The peers part: its table, and a peer's study run for real in a virtualenv the bench makes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import peers


def test_each_peer_is_compared_with_our_wall_time_against_the_target():
    results = {
        "sweep": (20.0, [3e-4, 1e-5]),
        "KerasTuner": (300.0, [2e-4, math.nan]),
        "Ray Tune": (200.0, [5e-5]),
        "Other": "not run: pip install other failed: no matching distribution",
    }
    rows = {r.what: r for r in peers.peers_section(results, 10, 50).rows}
    assert rows["sweep"].value == "20 s, best val MSE 1.00e-05 (2 full trials)"
    assert rows["KerasTuner"].value.startswith("300 s, best val MSE 2.00e-04")
    assert (
        rows["KerasTuner wall time / sweep's"].value,
        rows["KerasTuner wall time / sweep's"].verdict,
    ) == ("15.0x", "PASS")
    assert (
        rows["Ray Tune wall time / sweep's"].value,
        rows["Ray Tune wall time / sweep's"].verdict,
    ) == ("10.0x", "FAIL")
    assert rows["Other"].value.startswith("not run: pip install other failed")
    assert "Other wall time / sweep's" not in rows


def test_a_peer_that_cannot_be_installed_is_a_reason_not_a_crash(tmp_path: Path):
    reason = peers.peer_python(tmp_path / "venv", ["sweep-no-such-package==0.0.1"])
    assert isinstance(reason, str) and reason.startswith(
        "not run: pip install sweep-no-such-package"
    )
    assert not (tmp_path / "venv" / ".installed").exists()


@pytest.mark.slow
def test_the_keras_tuner_study_runs_in_its_own_virtualenv_and_logs_each_trial(tmp_path: Path):
    from mlflow import MlflowClient

    python = peers.peer_python(tmp_path / "venv", peers.PEERS["KerasTuner"][1])
    assert not isinstance(python, str), python
    data = peers.write_data(tmp_path / "sine.npz", [])
    seconds, values = peers.peer(python, "kerastuner_study.py", data, tmp_path / "kt", 2, 2)
    assert len(values) == 2 and all(math.isfinite(v) for v in values) and seconds > 0
    client = MlflowClient(f"sqlite:///{tmp_path}/kt/mlflow.db")
    exp = client.get_experiment_by_name("peer-keras-tuner")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    assert len(client.get_metric_history(runs[0].info.run_id, "val_mse")) == 2
