"""The MLflow adapter: the only package in sweep that imports mlflow.

Runs and their lifecycle (`runs`), and everything else that talks to MLflow, go through here, so
training, the study and the commands never see MLflow's API, and `tracking=none` needs none of it.
"""

from sweep.tracking.runs import (
    MlflowClient,
    MlflowException,
    NullRun,
    NullTracker,
    Run,
    Tracker,
    check_reachable,
    drain,
    enable_wal,
    make_tracker,
    warm_up,
    write_in_background,
)

__all__ = [
    "MlflowClient",
    "MlflowException",
    "NullRun",
    "NullTracker",
    "Run",
    "Tracker",
    "check_reachable",
    "drain",
    "enable_wal",
    "make_tracker",
    "warm_up",
    "write_in_background",
]
