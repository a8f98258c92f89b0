"""A user's own model builders and data function, named by `_target_` from the problem tests."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import Input, Sequential, layers


def wide(input_dim: int, output_dim: int, units: int = 16, dropout: float = 0.0) -> Sequential:
    """One hidden layer with dropout: keyword arguments of its own, sweepable from search.space."""
    return Sequential(
        [
            Input(shape=(input_dim,)),
            layers.Dense(units, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(output_dim),
        ],
        name=f"wide_{units}",
    )


def numpy_inside(input_dim: int, output_dim: int) -> Sequential:
    """A layer XLA cannot compile (tf.numpy_function): the loop must fall back to model.fit."""

    def numpy_tanh(t: tf.Tensor) -> tf.Tensor:
        out = tf.numpy_function(lambda a: np.tanh(a).astype(np.float32), [t], tf.float32)
        return tf.ensure_shape(out, t.shape)

    return Sequential(
        [
            Input(shape=(input_dim,)),
            layers.Lambda(numpy_tanh, output_shape=(input_dim,)),  # before any weights: no gradient
            layers.Dense(8, activation="tanh"),
            layers.Dense(output_dim),
        ],
        name="numpy_inside",
    )


def plane(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A user's data function returning plain arrays: y = 2 a - b."""
    x = np.random.default_rng(seed).normal(size=(n, 2))
    return x, 2 * x[:, :1] - x[:, 1:]


def fit_with_keras(model, data, optimizer, loss, epochs, batch_size, report, extra_callbacks=0):  # noqa: ANN001, ANN201
    """A user's own training step: Keras's fit with the project's callback (and one of its own)."""
    import keras

    model.compile(optimizer=optimizer, loss=loss)
    callbacks = [report, *[keras.callbacks.TerminateOnNaN() for _ in range(extra_callbacks)]]
    model.fit(data.train.x, data.train.y, batch_size, epochs, verbose=0, callbacks=callbacks)
    return model


def own_loop(model, data, optimizer, report, epochs: int):  # noqa: ANN001, ANN201
    """A user's loop without fit: one full-batch step per epoch, reported by calling report."""
    for epoch in range(1, epochs + 1):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(data.train.x, training=True) - data.train.y))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        report(epoch, float(loss))
