"""The tutorial's study on KerasTuner's Bayesian tuner: one MLflow run per trial, per-epoch
losses logged, the last epoch's validation MSE the trial's value (as `make sweep` scores it)."""

from __future__ import annotations

import math

import keras_tuner as kt
import mlflow
from peer_common import ACTIVATIONS, LAST, TUTORIAL, EpochsToMlflow, arguments, build, finish, track


def model_for(hp: kt.HyperParameters):  # noqa: ANN201 - a keras.Model
    """The space of `conf/search/default.yaml`; the tutorial's values are the defaults."""
    return build(
        hp.Int("depth", 1, 6, default=TUTORIAL["depth"]),
        hp.Int("width", 8, 64, sampling="log", default=TUTORIAL["width"]),
        hp.Choice("activation", list(ACTIVATIONS), default=TUTORIAL["activation"]),
        hp.Float("learning_rate", 1e-3, 0.3, sampling="log", default=TUTORIAL["learning_rate"]),
    )


class TrackedTuner(kt.BayesianOptimization):
    """Each trial inside its own MLflow run, its values collected for the result line."""

    values: list[float] = []

    def run_trial(self, trial, *args, **kwargs):  # noqa: ANN001, ANN201, ANN002, ANN003
        LAST["val_mse"] = math.nan
        with mlflow.start_run(run_name=f"trial-{trial.trial_id}"):
            mlflow.log_params(trial.hyperparameters.values)
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), EpochsToMlflow()]
            out = super().run_trial(trial, *args, **kwargs)
        if math.isfinite(LAST["val_mse"]):
            self.values.append(LAST["val_mse"])
        return out


def main() -> None:
    """Search, then print the result line."""
    data, store, trials, epochs = arguments()
    track(store, "peer-keras-tuner")
    tuner = TrackedTuner(
        model_for, objective="val_loss", max_trials=trials, seed=0,
        directory=str(store / "kt"), project_name="sine", overwrite=True,
    )  # fmt: skip
    tuner.search(
        data["x_train"], data["y_train"], epochs=epochs, batch_size=100, shuffle=True,
        validation_data=(data["x_val"], data["y_val"]), verbose=0,
    )  # fmt: skip
    finish(TrackedTuner.values)


if __name__ == "__main__":
    main()
