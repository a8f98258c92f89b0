"""The MLflow adapter: the only package in sweep that imports mlflow.

Runs and their lifecycle (`runs`), experiments' tags for the UI (`experiments`), the launcher
of `mlflow server` (`server`), and everything else that talks to MLflow, go through here, so
training, the study and the commands never see MLflow's API, and `tracking=none` needs none of it.
"""

from sweep.tracking.experiments import Experiment, Experiments
from sweep.tracking.history import Reader
from sweep.tracking.models import alias_tags, load_alias, load_run_model, logged_model_id, register
from sweep.tracking.runs import (
    MlflowClient,
    MlflowException,
    NullRun,
    NullTracker,
    Run,
    Tracker,
    TrackingUnavailable,
    check_reachable,
    drain,
    enable_wal,
    make_tracker,
    tracked_run,
    warm_up,
    write_in_background,
)
from sweep.tracking.server import (
    check_port,
    default_allowed_hosts,
    local_url,
    serve,
    stop,
    wait_healthy,
)

__all__ = [
    "Experiment",
    "Experiments",
    "MlflowClient",
    "MlflowException",
    "NullRun",
    "NullTracker",
    "Reader",
    "Run",
    "Tracker",
    "TrackingUnavailable",
    "alias_tags",
    "check_port",
    "check_reachable",
    "default_allowed_hosts",
    "drain",
    "enable_wal",
    "load_alias",
    "load_run_model",
    "local_url",
    "logged_model_id",
    "make_tracker",
    "register",
    "serve",
    "stop",
    "tracked_run",
    "wait_healthy",
    "warm_up",
    "write_in_background",
]
