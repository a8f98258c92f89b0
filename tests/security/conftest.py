"""Fixtures the attacker's tests share: one real SQLite MLflow store per module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory):
    """One SQLite store for the module (its schema migration takes seconds)."""
    import os

    import mlflow

    from sweep.tracking import Tracker

    folder = tmp_path_factory.mktemp("store")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    tracker = Tracker(f"sqlite:///{folder}/mlflow.db", "sine", str(folder / "artifacts"))
    tracker.setup()
    mlflow.set_tracking_uri(None)  # Tracker exports it; other modules' tests must not see it
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return tracker
