"""The MLflow adapter: the only package in sweep that imports mlflow.

Runs and their lifecycle (`runs`), what past runs logged (`history`), Keras models in the
registry (`models`), experiments' tags for the UI (`experiments`) and the `mlflow server` command
(`mlflow_server`) live here, so training, the study and the commands never see MLflow's API.
With `tracking=none` a worker still imports this package (its run context is a `NullRun`), but
nothing is written to any store.
"""

from sweep.tracking.experiments import Experiment, Experiments
from sweep.tracking.history import Reader
from sweep.tracking.mlflow_server import default_allowed_hosts, serve
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
    make_tracker,
    tracked_run,
    warm_up,
    write_in_background,
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
    "check_reachable",
    "default_allowed_hosts",
    "drain",
    "load_alias",
    "load_run_model",
    "logged_model_id",
    "make_tracker",
    "register",
    "serve",
    "tracked_run",
    "warm_up",
    "write_in_background",
]
