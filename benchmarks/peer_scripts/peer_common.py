"""What both peer scripts share, so the two studies differ only in the tool that runs them:
the data file the bench wrote, the tutorial's model and its space, one MLflow run per trial.

Run in a peer's own virtualenv (keras-tuner or Ray Tune installed there, TensorFlow, Keras and
MLflow shared with the project's), never imported by the project.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np

ACTIVATIONS = ("tanh", "relu", "sigmoid", "elu")
TUTORIAL = {"depth": 4, "width": 20, "activation": "tanh", "learning_rate": 0.01}


def arguments() -> tuple[dict[str, np.ndarray], Path, int, int]:
    """`<script> DATA.npz STORE TRIALS EPOCHS`: the splits, where to write, the study's size."""
    data, store, trials, epochs = sys.argv[1:5]
    with np.load(data) as f:
        arrays = {k: f[k] for k in f.files}
    return arrays, Path(store), int(trials), int(epochs)


def build(depth: int, width: int, activation: str, learning_rate: float) -> keras.Model:
    """The tutorial's MLP (depth x width, then a linear unit), plain SGD, MSE: as `make sweep`."""
    layers = [keras.Input((1,))]
    layers += [keras.layers.Dense(width, activation=activation) for _ in range(depth)]
    model = keras.Sequential([*layers, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    return model


# The running trial's last validation MSE; module state, since KerasTuner deep-copies callbacks.
LAST = {"val_mse": float("nan")}


class EpochsToMlflow(keras.callbacks.Callback):
    """Each epoch's losses in the active MLflow run, as the project logs them; keeps the last."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        LAST["val_mse"] = float(logs["val_loss"])
        mlflow.log_metrics({"train_mse": logs["loss"], "val_mse": LAST["val_mse"]}, step=epoch)


def track(store: Path, experiment: str) -> None:
    """MLflow's SQLite store under the bench's folder, as `make sweep` uses by default."""
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    mlflow.set_experiment(experiment)


def finish(values: list[float]) -> None:
    """The result line the bench reads: every full-length trial's last validation MSE."""
    print("PEER-RESULT " + json.dumps({"values": values}), flush=True)
