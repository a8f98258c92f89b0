"""Your own training step (`trainer._target_`): it gets the built model, the data and the
project's callback; each epoch reaches the hooks, which stop it (pruning) from inside model.fit."""

from __future__ import annotations

import math

import pytest

from sweep.config.checks import prepare
from sweep.core.errors import ConfigError, Diverged
from sweep.run import execute
from sweep.tracking import NullRun
from sweep.train.loop import EpochLog, StopTraining

TRUST = "trusted_modules=[tests.problem_models]"
FIT = "+trainer._target_=tests.problem_models.fit_with_keras"


class Logged(NullRun):
    """A run that keeps what is logged to it (params and per-epoch metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.params: dict = {}
        self.steps: dict[int, dict] = {}

    def log_params(self, params: dict, tags: dict | None = None) -> None:
        self.params |= params

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        self.steps.setdefault(step, {}).update(metrics)


def run(cfg, hooks=()):  # noqa: ANN001, ANN201
    logged = Logged()
    return execute(cfg, logged, hooks=hooks), logged


def test_model_fit_with_its_own_callbacks_is_tracked_epoch_by_epoch_and_exactly_again(compose_cfg):
    cfg = prepare(compose_cfg("experiment=tiny", TRUST, FIT, "+trainer.extra_callbacks=1"))
    result, logged = run(cfg)
    again, _ = run(cfg)
    assert [h.epoch for h in result.history] == [1, 2, 3, 4]
    assert logged.steps[1]["train_loss"] == result.history[0].train_loss
    assert result.history[-1].val_loss < result.history[0].val_loss
    assert result.history == again.history and result.metrics["val_mse"] == again.metrics["val_mse"]
    assert logged.params["trainer._target_"] == "tests.problem_models.fit_with_keras"


def test_a_hook_stops_model_fit_from_inside_as_the_pruner_does(compose_cfg):
    cfg = prepare(compose_cfg("experiment=tiny", TRUST, FIT, "trainer.epochs=10"))
    seen: list[EpochLog] = []

    def prune_at_2(log: EpochLog) -> None:
        seen.append(log)
        if log.epoch == 2:
            raise StopTraining("pruned at epoch 2")

    result, _ = run(cfg, hooks=[prune_at_2])
    assert [log.epoch for log in seen] == [1, 2] and result.stopped == "pruned at epoch 2"
    assert math.isfinite(result.val_mse)


def test_a_loop_of_your_own_reports_by_calling_the_callback(compose_cfg):
    own = "+trainer._target_=tests.problem_models.own_loop"
    result, logged = run(prepare(compose_cfg("experiment=tiny", TRUST, own)))
    assert sorted(logged.steps)[:4] == [1, 2, 3, 4] and len(result.history) == 4


def test_a_diverging_loss_is_raised_out_of_fit(compose_cfg):
    cfg = prepare(compose_cfg("experiment=tiny", TRUST, FIT, "optimizer.learning_rate=1e6"))
    with pytest.raises(Diverged):
        run(cfg)


def test_a_training_function_outside_trusted_modules_is_refused_before_tensorflow(compose_cfg):
    with pytest.raises(ConfigError, match="trainer._target_='tests.problem_models.own_loop' is"):
        prepare(compose_cfg("+trainer._target_=tests.problem_models.own_loop"))


def test_precision_reaches_the_dtype_policy_and_the_record_says_it_and_the_device(compose_cfg):
    from sweep.run import build_model, runtime_state
    from sweep.train.data import dataset_for
    from sweep.train.loop import set_precision

    cfg = prepare(compose_cfg("experiment=tiny", "+trainer.precision=mixed_float16"))
    result, logged = run(cfg)
    assert runtime_state()["precision"] == "mixed_float16"
    model = build_model(cfg, dataset_for(cfg))
    assert model.layers[0].dtype_policy.name == "mixed_float16"
    assert (
        model.layers[0].compute_dtype == "float16" and model.layers[0].variable_dtype == "float32"
    )
    assert math.isfinite(result.val_mse) and result.fallback  # model.fit brings loss scaling
    run(prepare(compose_cfg("experiment=tiny")))  # the next run is float32 again
    assert runtime_state()["precision"] == "float32" and runtime_state()["device"].endswith("CPU:0")
    set_precision("float32")
    with pytest.raises(ConfigError, match="trainer.precision='half' is not one of: float32"):
        prepare(compose_cfg("+trainer.precision=half"))
