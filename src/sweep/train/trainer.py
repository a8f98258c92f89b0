"""Your own training step: `trainer._target_` names a function of yours that trains the model.

The project still builds the data, the model and the optimizer, seeds every random source, and
tracks, prunes and replays the run; the function only trains, e.g. with the `model.fit` code,
callbacks and augmentation it already has. It is called with what its signature names of
`model`, `data` (a `Dataset`), `optimizer`, `loss` (a Keras Loss, the one the project evaluates
with: a classifier's outputs are logits), `epochs`, `batch_size`, `seed` and `report`, plus the
trainer config's own extra keys. No MLflow here, as in loop.py.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from sweep.core.errors import Diverged
from sweep.train.backend import keras
from sweep.train.data import Dataset
from sweep.train.loop import (
    EpochHook,
    EpochLog,
    StopTraining,
    TrainResult,
    final_metrics,
    keras_loss,
    loss_function,
    split_loss,
)


class Report(keras.callbacks.Callback):
    """The project's callback: pass it to `model.fit(callbacks=[report, ...])`, or call
    `report(epoch, train_loss)` after each epoch of a loop of your own.

    Each epoch goes to the project's hooks (the metric log, the pruner, the budgets); a hook's
    StopTraining, a Ctrl-C or a diverged loss is raised out of your function, which should let it
    pass. The validation loss is the project's own (the whole validation split, the same loss
    as the compiled loop), so every trainer is pruned and ranked on the same number.
    """

    def __init__(self, model: keras.Model, data: Dataset, loss: str, hooks: Sequence[EpochHook]):
        super().__init__()
        self.net, self.data, self.hooks = model, data, hooks
        self.loss_fn = loss_function(loss)
        self.history: list[EpochLog] = []

    def __call__(self, epoch: int, train_loss: float) -> None:
        log = EpochLog(int(epoch), float(train_loss), self.val_loss())
        self.history.append(log)
        for hook in self.hooks:
            hook(log)
        if not (math.isfinite(log.train_loss) and math.isfinite(log.val_loss)):
            bad = log.train_loss if not math.isfinite(log.train_loss) else log.val_loss
            raise Diverged(log.epoch, bad)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Keras counts epochs from 0; the project (like the progress bar) from 1."""
        self(epoch + 1, (logs or {}).get("loss", math.nan))

    def val_loss(self) -> float:
        return split_loss(self.net, self.data.val, self.loss_fn)


def train_with(
    function: Callable[..., Any],
    model: keras.Model,
    data: Dataset,
    offered: dict[str, Any],
    options: dict[str, Any],
    hooks: Sequence[EpochHook] = (),
    loss: str = "mse",
) -> TrainResult:
    """Run a user's training function with the arguments it names; the same result as `train`."""
    start = time.perf_counter()
    report = Report(model, data, loss, hooks)
    given = {"model": model, "data": data, "loss": keras_loss(loss), "report": report}
    kwargs = {**accepted(function, {**offered, **given}), **options}
    result = TrainResult()
    try:
        function(**kwargs)
    except StopTraining as stop:
        result.stopped = str(stop) or f"stopped at epoch {len(report.history)}"
    result.history = report.history
    result.metrics = final_metrics(model, data, loss)
    result.seconds = time.perf_counter() - start
    return result


def accepted(function: Callable[..., Any], offered: dict[str, Any]) -> dict[str, Any]:
    """The offered arguments the function's signature names (all of them to a **kwargs)."""
    params = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return offered
    return {k: v for k, v in offered.items() if k in params}
