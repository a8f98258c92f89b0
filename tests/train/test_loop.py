"""The compiled training loop: the tutorial's quality, determinism, hooks, divergence."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest
from keras.optimizers import SGD

from sweep.train.data import make_dataset
from sweep.train.loop import (
    Diverged,
    EpochLog,
    StopTraining,
    configure_tensorflow,
    mse,
    reset_state,
    train,
)
from sweep.train.model import build_mlp

TUTORIAL = make_dataset(-5.0, 5.0, 0.001, 2000, 2000, seed=1234)


def _train(epochs: int, seed: int = 0, lr: float = 0.01, hooks=(), depth=4, width=20, act="tanh"):
    configure_tensorflow(None, deterministic=True)
    reset_state(seed)
    model = build_mlp(depth, width, act)
    return model, train(model, SGD(learning_rate=lr), TUTORIAL, epochs, 100, seed, hooks=hooks)


def test_tutorial_configuration_reaches_the_tutorials_loss_band():
    model, result = _train(50)
    assert len(result.history) == 50
    assert 0.002 <= result.train_mse <= 0.006  # tutorial: 0.0034 after 50 epochs
    assert result.val_mse < 0.01
    # steep fall in the first epochs, then a slow decline
    assert result.history[4].train_loss < result.history[0].train_loss / 5
    assert result.history[-1].train_loss < result.history[4].train_loss
    assert result.train_mse == pytest.approx(mse(model, TUTORIAL.train.x, TUTORIAL.train.y))


def test_same_seed_gives_identical_losses_and_another_seed_does_not():
    first = [h.train_loss for h in _train(4, seed=3)[1].history]
    again = [h.train_loss for h in _train(4, seed=3)[1].history]
    other = [h.train_loss for h in _train(4, seed=4)[1].history]
    assert first == again
    assert first != other


def test_hooks_see_every_epoch_and_may_stop_training():
    seen: list[EpochLog] = []

    class Stop(Exception):
        pass

    def hook(log: EpochLog) -> None:
        seen.append(log)
        if log.epoch == 3:
            raise Stop

    with pytest.raises(Stop):
        _train(10, hooks=[hook])
    assert [log.epoch for log in seen] == [1, 2, 3]


def test_stop_training_from_a_hook_returns_what_was_learned():
    def prune_at_3(log: EpochLog) -> None:
        if log.epoch == 3:
            raise StopTraining("pruned at epoch 3")

    _, result = _train(10, hooks=[prune_at_3])
    assert result.stopped == "pruned at epoch 3"
    assert [log.epoch for log in result.history] == [1, 2, 3]
    assert math.isfinite(result.val_mse) and result.val_mse < result.history[0].val_loss


def _sgd_by_hand(model, data, batch_size: int, lr: float, seed: int) -> list[np.ndarray]:
    """One epoch of plain SGD in eager mode, batch by batch over train()'s permutation."""
    import tensorflow as tf

    perm = np.random.default_rng(seed).permutation(len(data.train.x))
    x, y = data.train.x[perm], data.train.y[perm]
    weights = model.trainable_variables
    for start in range(0, len(x), batch_size):
        xb, yb = (tf.constant(a[start : start + batch_size]) for a in (x, y))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(xb, training=True) - yb))
        for w, g in zip(weights, tape.gradient(loss, weights), strict=True):
            w.assign_sub(lr * g)
    return [w.numpy() for w in weights]


def test_partial_last_batch_is_trained_on():
    data = make_dataset(-1.0, 1.0, 0.01, 50, 50, seed=0)
    assert len(data.train.x) == 200  # batch 64: three full batches and a partial one of 8
    configure_tensorflow(None, deterministic=True)
    reset_state(0)
    model = build_mlp(1, 4, "tanh")
    start = [w.copy() for w in model.get_weights()]
    optimizer = SGD(learning_rate=0.1)
    result = train(model, optimizer, data, 1, 64, seed=0)
    assert math.isfinite(result.train_mse)
    assert int(optimizer.iterations.numpy()) == 4  # one step per batch, the partial one included
    trained = [w.copy() for w in model.get_weights()]
    model.set_weights(start)
    expected = _sgd_by_hand(model, data, 64, 0.1, seed=0)
    for got, want in zip(trained, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_divergence_stops_at_the_epoch_it_happens():
    with pytest.raises(Diverged) as info:
        _train(20, lr=5.0, act="relu")
    assert 1 <= info.value.epoch < 20
    assert not math.isfinite(info.value.loss)


def _weights_and_losses(shared: bool, monkeypatch, **kw) -> tuple[list, list]:
    """Train with the shared epoch graph or with one traced for this trial alone."""
    import sweep.train.loop as training

    if not shared:
        monkeypatch.setattr(training, "shared_key", lambda s: None)
    model, result = _train(5, **kw)
    losses = [(h.train_loss, h.val_loss) for h in result.history]
    monkeypatch.undo()
    return [w.numpy().tobytes() for w in model.weights], losses


@pytest.mark.parametrize("shape", [(4, 20, "tanh"), (2, 32, "relu")], ids=["tutorial", "relu"])
def test_the_shared_epoch_graph_trains_bit_for_bit_as_one_traced_per_trial(monkeypatch, shape):
    depth, width, act = shape
    ours = _weights_and_losses(True, monkeypatch, depth=depth, width=width, act=act, lr=0.05)
    alone = _weights_and_losses(False, monkeypatch, depth=depth, width=width, act=act, lr=0.05)
    assert ours == alone


def test_trials_of_one_architecture_share_one_trace_and_others_get_their_own():
    import sweep.train.loop as training

    _train(1, depth=3, width=7)
    key = next(k for k in training._SHARED if '"units": 7' in k[0])
    traced = training._SHARED[key].experimental_get_tracing_count()
    _train(2, seed=1, depth=3, width=7, lr=0.02)  # another seed and learning rate: same graph
    assert training._SHARED[key].experimental_get_tracing_count() == traced == 1
    _train(1, depth=3, width=9)
    assert sum('"units": 9' in k[0] for k in training._SHARED) == 1


def test_an_optimizer_with_state_trains_in_a_graph_of_its_own():
    import keras

    from sweep.train.loop import _Setup, shared_key

    reset_state(0)
    model = build_mlp(2, 8, "tanh")
    for opt, shares in [
        (SGD(0.01), True),
        (SGD(0.01, momentum=0.9), False),
        (keras.optimizers.Adam(0.01), False),
        (SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)), False),
    ]:
        assert (shared_key(_Setup(model, opt, TUTORIAL, "mse", 100, False)) is not None) == shares


def test_trainings_leave_no_graph_and_no_registered_gradient_behind(monkeypatch):
    # Keras's optimizer sums gradients through a tf.custom_gradient, which registers a gradient
    # per trace in TensorFlow's global registry; its closure held each run's whole epoch graph.
    # (The graphs shared by architecture are kept on purpose, at most SHARED_MAX: not these.)
    from tensorflow.python.framework import ops

    import sweep.train.loop as training

    monkeypatch.setattr(training, "shared_key", lambda s: None)
    from tensorflow.python.framework.func_graph import FuncGraph

    def graphs() -> int:
        gc.collect()
        return sum(isinstance(o, FuncGraph) for o in gc.get_objects())

    _train(1)
    registered, alive = set(ops._gradient_registry.list()), graphs()
    for seed in range(3):
        _train(1, seed=seed, width=8 + seed)
    assert set(ops._gradient_registry.list()) == registered
    assert graphs() == alive


def test_the_shared_graphs_are_bounded(monkeypatch):
    import sweep.train.loop as training

    monkeypatch.setattr(training, "SHARED_MAX", 2)
    for width in (5, 6, 7):
        _train(1, width=width)
    assert len(training._SHARED) == 2
    assert ['"units": 7' in k[0] for k in training._SHARED] == [False, True]  # oldest went first
