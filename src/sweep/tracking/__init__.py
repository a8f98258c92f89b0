"""The MLflow adapter: the only package in sweep that imports mlflow.

Runs and their lifecycle (`runs`), what past runs logged (`history`), Keras models in the
registry (`models`), experiments' tags for the UI (`experiments`) and the `mlflow server` command
(`mlflow_server`) live here, so training, the study and the commands never see MLflow's API.
With `tracking=none` a worker still imports this package (its run context is a `NullRun`), but
nothing is written to any store.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Each name's home module. Imported on first use (PEP 562), so `sweep ui` and `sweep server` can
# start MLflow's server process before paying for MLflow's own import (~2 s) in theirs.
_HOMES = {
    "Experiment": "experiments",
    "Experiments": "experiments",
    "Reader": "history",
    "default_allowed_hosts": "mlflow_server",
    "serve": "mlflow_server",
    **dict.fromkeys(
        ["alias_tags", "load_alias", "load_run_model", "logged_model_id", "register"], "models"
    ),
    **dict.fromkeys(
        [
            "MlflowClient",
            "MlflowException",
            "NullRun",
            "NullTracker",
            "Run",
            "Tracker",
            "TrackingUnavailable",
            "check_reachable",
            "drain",
            "make_tracker",
            "tracked_run",
            "warm_up",
            "write_in_background",
        ],
        "runs",
    ),
}


def __getattr__(name: str) -> Any:
    """`sweep.tracking.X`: import X's home module now and keep X here."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports
    from sweep.tracking.experiments import Experiment, Experiments
    from sweep.tracking.history import Reader
    from sweep.tracking.mlflow_server import default_allowed_hosts, serve
    from sweep.tracking.models import (
        alias_tags,
        load_alias,
        load_run_model,
        logged_model_id,
        register,
    )
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
