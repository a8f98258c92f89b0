"""The tutorial's study on Ray Tune with OptunaSearch (TPE, as `make sweep`) and ASHA (its
pruner): one MLflow run per trial through Ray's own MLflow callback, per-epoch losses reported,
the tutorial's configuration evaluated first (as `make sweep` enqueues it)."""

from __future__ import annotations

import math

import keras
import numpy as np
import ray
from peer_common import ACTIVATIONS, TUTORIAL, arguments, build, finish
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch


class ReportEpochs(keras.callbacks.Callback):
    """Each epoch's validation MSE to Tune: ASHA stops a trial between epochs."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        tune.report({"val_mse": float(logs["val_loss"]), "train_mse": float(logs["loss"])})


def trainable(config: dict, data: dict[str, np.ndarray], epochs: int) -> None:
    """One trial: the tutorial's fit with the sampled shape and learning rate."""
    model = build(config["depth"], config["width"], config["activation"], config["learning_rate"])
    model.fit(
        data["x_train"], data["y_train"], epochs=epochs, batch_size=100, shuffle=True,
        validation_data=(data["x_val"], data["y_val"]), verbose=0, callbacks=[ReportEpochs()],
    )  # fmt: skip


def main() -> None:
    """Search on a local Ray of this machine's cores, then print the result line."""
    data, store, trials, epochs = arguments()
    ray.init(include_dashboard=False, log_to_driver=False)
    space = {
        "depth": tune.randint(1, 7),
        "width": tune.lograndint(8, 65),
        "activation": tune.choice(list(ACTIVATIONS)),
        "learning_rate": tune.loguniform(1e-3, 0.3),
    }
    tuner = tune.Tuner(
        tune.with_parameters(trainable, data=data, epochs=epochs),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_mse",
            mode="min",
            num_samples=trials,
            search_alg=OptunaSearch(points_to_evaluate=[TUTORIAL], seed=0),
            scheduler=ASHAScheduler(max_t=epochs, grace_period=min(5, epochs)),
        ),  # fmt: skip
        run_config=tune.RunConfig(
            storage_path=str(store / "ray"),
            verbose=0,
            callbacks=[
                MLflowLoggerCallback(
                    tracking_uri=f"sqlite:///{store}/mlflow.db", experiment_name="peer-ray-tune"
                )
            ],
        ),  # fmt: skip
    )
    results = tuner.fit()
    full = [r.metrics for r in results if r.metrics and r.metrics["training_iteration"] == epochs]
    finish([m["val_mse"] for m in full if math.isfinite(m["val_mse"])])


if __name__ == "__main__":
    main()
