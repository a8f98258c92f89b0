"""The training loop: one compiled TensorFlow graph per epoch, Keras model and optimizer inside.

Keras `model.fit` spends most of its time on per-step Python overhead for a model this small;
compiling the whole epoch (shuffle, every mini-batch step, validation) into one `tf.function`
keeps the same algorithm and removes that overhead. No MLflow here: callers pass epoch hooks.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sweep.data import Dataset


def _import_tensorflow_quietly():  # noqa: ANN202
    """Import TensorFlow with its C++ start-up banner (oneDNN, CUDA probes) kept off stderr.

    Those lines are printed before absl logging is initialised, so no environment variable
    silences them; only the file descriptor can.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return keras, tf


keras, tf = _import_tensorflow_quietly()
tf.get_logger().setLevel(
    "ERROR"
)  # each trial traces its own epoch graph; that is not a retrace bug


@dataclass(frozen=True)
class EpochLog:
    """Losses after one epoch; `epoch` counts from 1 like Keras's progress bar."""

    epoch: int
    train_loss: float
    val_loss: float


EpochHook = Callable[[EpochLog], None]


class Diverged(RuntimeError):
    """The loss became NaN or infinite; training stops at that epoch."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"loss diverged to {loss} at epoch {epoch}")
        self.epoch = epoch
        self.loss = loss


@dataclass
class TrainResult:
    history: list[EpochLog] = field(default_factory=list)
    train_mse: float = math.nan
    val_mse: float = math.nan
    test_mse: float = math.nan
    seconds: float = 0.0


_configured = False


def configure_tensorflow(threads: int | None = None, deterministic: bool = True) -> None:
    """Set TensorFlow's thread pools and op determinism once, before the runtime starts."""
    global _configured
    if _configured:
        return
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    _configured = True


def reset_state(seed: int) -> None:
    """Fresh Keras state per run, and one seed for Python, numpy and TensorFlow."""
    keras.backend.clear_session(free_memory=True)
    keras.utils.set_random_seed(seed)


def _epoch_function(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, batch_size: int, jit: bool
) -> Callable:
    """Build the compiled epoch: gather a permutation, step through mini-batches, validate."""
    loss_fn = keras.losses.MeanSquaredError()
    weights = model.trainable_variables

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def run_epoch(x, y, perm, x_val, y_val):  # noqa: ANN001, ANN202 - tensors in, tensors out
        xs = tf.gather(x, perm)
        ys = tf.gather(y, perm)
        n = tf.shape(xs)[0]
        n_batches = (n + batch_size - 1) // batch_size
        total = tf.constant(0.0)
        for i in tf.range(n_batches):
            xb = xs[i * batch_size : (i + 1) * batch_size]
            yb = ys[i * batch_size : (i + 1) * batch_size]
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True))
            optimizer.apply(tape.gradient(loss, weights), weights)
            total += loss * tf.cast(tf.shape(xb)[0], tf.float32)
        val = loss_fn(y_val, model(x_val, training=False))
        return total / tf.cast(n, tf.float32), val

    return run_epoch


def mse(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error over a whole array in one forward pass."""
    pred = model(tf.constant(x), training=False)
    return float(tf.reduce_mean(tf.square(pred - y)))


def train(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    data: Dataset,
    epochs: int,
    batch_size: int,
    seed: int,
    jit_compile: bool = False,
    hooks: Sequence[EpochHook] = (),
) -> TrainResult:
    """Train on reshuffled mini-batches; hooks see every epoch and may raise to stop it."""
    start = time.perf_counter()
    optimizer.build(model.trainable_variables)
    run_epoch = _epoch_function(model, optimizer, batch_size, jit_compile)
    x, y = tf.constant(data.train.x), tf.constant(data.train.y)
    x_val, y_val = tf.constant(data.val.x), tf.constant(data.val.y)
    rng = np.random.default_rng(seed)
    result = TrainResult()
    for epoch in range(1, epochs + 1):
        perm = tf.constant(rng.permutation(len(data.train.x)).astype(np.int32))
        train_loss, val_loss = (float(v) for v in run_epoch(x, y, perm, x_val, y_val))
        log = EpochLog(epoch, train_loss, val_loss)
        result.history.append(log)
        for hook in hooks:
            hook(log)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise Diverged(epoch, train_loss if not math.isfinite(train_loss) else val_loss)
    result.train_mse = mse(model, data.train.x, data.train.y)
    result.val_mse = mse(model, data.val.x, data.val.y)
    result.test_mse = mse(model, data.test.x, data.test.y)
    result.seconds = time.perf_counter() - start
    return result


def fit_like_tutorial(
    model: keras.Model, data: Dataset, epochs: int, batch_size: int, lr: float = 0.01
) -> float:
    """The tutorial's `compile('sgd')` + `fit` + `evaluate`, kept as the benchmark's reference."""
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    model.fit(data.train.x, data.train.y, batch_size=batch_size, epochs=epochs, verbose=0)
    return float(model.evaluate(data.train.x, data.train.y, verbose=0))
