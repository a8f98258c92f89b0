"""The training loop: one compiled TensorFlow graph per epoch, Keras model and optimizer inside.

Keras `model.fit` spends most of its time on per-step Python overhead for a model this small;
compiling the whole epoch (shuffle, every mini-batch step, validation) into one `tf.function`
keeps the same algorithm and removes that overhead. A model that cannot be compiled that way
(e.g. an op XLA lacks) trains through `model.fit`, one epoch per call, with the same hooks.
A data set read from files (`data=npy`) streams through the same compiled steps, a chunk of
batches per call (`_streamed_epochs`). No MLflow here: callers pass epoch hooks.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sweep.core.errors import Diverged
from sweep.train.backend import keras, tf
from sweep.train.data import Dataset, Split, chunks, read_rows, streamed


@dataclass(frozen=True)
class EpochLog:
    """Losses after one epoch; `epoch` counts from 1 like Keras's progress bar."""

    epoch: int
    train_loss: float
    val_loss: float


EpochHook = Callable[[EpochLog], None]


class StopTraining(Exception):
    """Raised by a hook to end training early (e.g. pruning); `train` returns what was learned."""


@dataclass
class TrainResult:
    history: list[EpochLog] = field(default_factory=list)
    # Every final metric of every split by name: train_mse, val_mse, test_mse, val_accuracy, ...
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    stopped: str | None = None  # why a hook ended training early, if one did
    fallback: str | None = None  # why the compiled loop gave way to model.fit, if it did

    @property
    def train_mse(self) -> float:
        return self.metrics.get("train_mse", math.nan)

    @property
    def val_mse(self) -> float:
        return self.metrics.get("val_mse", math.nan)

    @property
    def test_mse(self) -> float:
        return self.metrics.get("test_mse", math.nan)


def loss_function(name: str) -> Callable:
    """Per-example loss by name; a classifier's outputs are logits, its targets class labels."""
    functions = {
        "mse": keras.losses.mean_squared_error,
        "mae": keras.losses.mean_absolute_error,
        "huber": keras.losses.huber,
        "crossentropy": lambda y, logits: keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True
        ),
    }
    return functions[name]


def keras_loss(name: str) -> keras.losses.Loss:
    """The same loss as a Keras Loss object, for `model.compile`: a lambda there would make the
    compiled model unsaveable (MLflow logs it with its compile config)."""
    losses = {
        "mse": keras.losses.MeanSquaredError,
        "mae": keras.losses.MeanAbsoluteError,
        "huber": keras.losses.Huber,
        "crossentropy": lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    }
    return losses[name]()


_configured = False
_frozen = False


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


def set_precision(precision: str = "float32") -> None:
    """Keras's global dtype policy for the models built next.

    Under a mixed policy the layers compute in 16 bits with float32 weights; the compiled loop
    has no loss scaling, so such a model trains through model.fit, which adds it (said once).
    """
    keras.config.set_dtype_policy(precision)


def device() -> str:
    """The device a run trains on: the first GPU when TensorFlow sees one, else the CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return (gpus or tf.config.list_logical_devices("CPU"))[0].name


def reset_state(seed: int) -> None:
    """Fresh Keras state per run, and one seed for Python, numpy and TensorFlow."""
    global _frozen
    if not _frozen:
        # Everything alive before the first run is the libraries (TensorFlow, MLflow, ...): move
        # it out of the collector's sight, so clear_session's gc.collect() walks only what runs
        # made (0.4 s -> ~0.02 s per trial, and no 0.4 s full collection in the first one).
        gc.freeze()
        _frozen = True
    keras.backend.clear_session(free_memory=True)
    keras.utils.set_random_seed(seed)


def _step_function(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, loss_fn: Callable
) -> Callable:
    """One optimizer step on one mini-batch; returns its mean loss."""
    weights = model.trainable_variables

    def step(xb, yb):  # noqa: ANN001, ANN202 - tensors in, tensors out
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(yb, model(xb, training=True)))
        optimizer.apply(tape.gradient(loss, weights), weights)
        return loss

    return step


def _epoch_function(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    loss_fn: Callable,
    batch_size: int,
    jit: bool,
) -> Callable:
    """Build the compiled epoch: gather a permutation, step through mini-batches, validate.

    The full batches are reshaped to a static [n_batches, batch_size, *input_shape] block, so every
    step has static shapes and Grappler folds the shape arithmetic out of the loop (about 20%
    fewer ops per step than slicing with dynamic bounds); a partial last batch gets one more step.
    """
    step = _step_function(model, optimizer, loss_fn)

    @tf.function(jit_compile=jit)
    def run_epoch(x, y, perm, x_val, y_val):  # noqa: ANN001, ANN202 - tensors in, tensors out
        n = x.shape[0]  # static: each trial traces its own epoch for its own arrays
        xb, yb, last = _batches(x, y, perm, batch_size)
        total = tf.constant(0.0)
        for i in tf.range(xb.shape[0]):
            total += step(xb[i], yb[i]) * batch_size
        if last:
            total += step(*last) * last[0].shape[0]
        val = tf.reduce_mean(loss_fn(y_val, model(x_val, training=False)))
        return total / n, val

    return run_epoch


def _batches(x: Any, y: Any, perm: Any, batch_size: int) -> tuple[Any, Any, tuple | None]:
    """In a traced epoch: the full batches of the permuted data as [n_batches, batch_size, ...]
    blocks, and the partial last batch (x, y), or None when the batches come out even."""
    full, rest = divmod(x.shape[0], batch_size)
    xs, ys = tf.gather(x, perm), tf.gather(y, perm)
    xb = tf.reshape(xs[: full * batch_size], (full, batch_size, *x.shape[1:]))
    yb = tf.reshape(ys[: full * batch_size], (full, batch_size, *y.shape[1:]))
    return xb, yb, (xs[full * batch_size :], ys[full * batch_size :]) if rest else None


def release_graphs(graph: Any) -> None:
    """Dismantle a finished trial's traced graphs (the epoch, its while-loop body and condition).

    TensorFlow's C++ graph keeps references the garbage collector cannot see, so without this
    every trial's graphs stay in memory (about 0.6 MB a trial; `make bench` measures it).
    """
    from tensorflow.python.framework.func_graph import dismantle_func_graph  # no public API

    graphs = [graph]
    for op in graph.get_operations():
        graphs += [g for a in ("_cond_graph", "_body_graph") if (g := getattr(op, a, None))]
    forget_custom_gradients(graphs)
    for g in graphs:
        with contextlib.suppress(Exception):  # best effort: a leak, never a failed trial
            dismantle_func_graph(g)


def forget_custom_gradients(graphs: Sequence[Any]) -> None:
    """Unregister the gradient functions that `tf.custom_gradient` registered for these graphs.

    Traced in a graph, `tf.custom_gradient` registers its gradient under a new name in
    TensorFlow's process-wide gradient registry and never removes it; the function's closure
    holds the traced tensors, so through it the registry kept every trial's whole epoch graph
    alive (1-2 MB a trial: Keras's optimizer sums gradients through `tf.distribute`'s
    `all_reduce`, which is such a function; tensorflow issue 97697). The ops that use one name
    it in their `_gradient_op_type` attribute; a finished trial's graphs are never differentiated
    again, so their entries can go.
    """
    from tensorflow.python.framework import ops  # the registry has no public API

    registry = ops._gradient_registry._registry
    for g in graphs:
        for op in g.get_operations():
            if op.type != "IdentityN":  # what custom_gradient wraps its tensors in
                continue
            with contextlib.suppress(Exception):  # no such attribute: an ordinary IdentityN
                registry.pop(op.get_attr("_gradient_op_type").decode(), None)


def mse(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error over a whole array in one forward pass."""
    pred = model(tf.constant(x), training=False)
    return float(tf.reduce_mean(tf.square(pred - y)))


def split_metrics(model: keras.Model, x: np.ndarray, y: np.ndarray, loss: str) -> dict[str, float]:
    """A split's final metrics in one forward pass: MSE and MAE, or cross-entropy and accuracy."""
    pred = model(tf.constant(x), training=False)
    if loss == "crossentropy":
        return {
            "crossentropy": float(tf.reduce_mean(loss_function(loss)(y, pred))),
            "accuracy": float(np.mean(np.argmax(np.asarray(pred), axis=-1) == y)),
        }
    out = {
        "mse": float(tf.reduce_mean(tf.square(pred - y))),  # the formula `mse` always used
        "mae": float(tf.reduce_mean(tf.abs(pred - y))),
    }
    if loss == "huber":
        out["huber"] = float(tf.reduce_mean(loss_function(loss)(y, pred)))
    return out


def final_metrics(model: keras.Model, data: Dataset, loss: str) -> dict[str, float]:
    """Every split's metrics, named `<split>_<metric>`: train_mse, val_accuracy, ..."""
    out = {}
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if streamed(split):
            metrics = streamed_metrics(model, split, loss)
        else:
            metrics = split_metrics(model, split.x, split.y, loss)
        out |= {f"{name}_{k}": v for k, v in metrics.items()}
    return out


# Rows read from a file per chunk: the chunk is what a streamed split holds in memory at once.
CHUNK_BYTES = 16 << 20


def chunk_rows(split: Split, batch_size: int = 1) -> int:
    """Rows of a chunk: CHUNK_BYTES of float32 inputs, in whole batches (at least one)."""
    row = 4 * math.prod(split.x.shape[1:])
    return max(1, CHUNK_BYTES // row // batch_size) * batch_size


def streamed_metrics(model: keras.Model, split: Split, loss: str) -> dict[str, float]:
    """`split_metrics` chunk by chunk, each weighted by its rows: every metric is a mean over
    rows of equal size, so the weighted mean of the chunks' means is the split's."""
    sums: dict[str, float] = {}
    for part in chunks(len(split.x), chunk_rows(split)):
        x, y = read_rows(split, part)
        for k, v in split_metrics(model, x, y, loss).items():
            sums[k] = sums.get(k, 0.0) + v * len(x)
    return {k: v / len(split.x) for k, v in sums.items()}


def split_loss(model: keras.Model, split: Split, loss_fn: Callable) -> float:
    """A split's mean loss: one forward pass in memory, chunk by chunk from a file."""
    if not streamed(split):
        return float(tf.reduce_mean(loss_fn(split.y, model(tf.constant(split.x), training=False))))
    total = 0.0
    for part in chunks(len(split.x), chunk_rows(split)):
        x, y = read_rows(split, part)
        total += float(tf.reduce_sum(loss_fn(y, model(x, training=False))))
    return total / len(split.x)


def train(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    data: Dataset,
    epochs: int,
    batch_size: int,
    seed: int,
    jit_compile: bool = False,
    hooks: Sequence[EpochHook] = (),
    loss: str = "mse",
) -> TrainResult:
    """Train on reshuffled mini-batches; hooks see every epoch and may stop it (StopTraining)."""
    start = time.perf_counter()
    if not model.built:  # a builder without keras.Input: make its weights before they are used
        model(data.train.x[:1])
    rng = np.random.default_rng(seed)
    result = TrainResult()
    setup = _Setup(model, optimizer, data, loss, batch_size, jit_compile)
    epoch_runner = runner_for(setup)
    try:
        for epoch in range(1, epochs + 1):
            perm = rng.permutation(len(data.train.x)).astype(np.int32)
            try:
                train_loss, val_loss = epoch_runner(perm)
            except Exception as exc:
                if epoch > 1 or result.fallback or isinstance(exc, KeyboardInterrupt):
                    raise
                result.fallback = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
                epoch_runner.close()
                epoch_runner = _fit_epochs(setup)
                train_loss, val_loss = epoch_runner(perm)
            log = EpochLog(epoch, train_loss, val_loss)
            result.history.append(log)
            try:
                for hook in hooks:
                    hook(log)
            except StopTraining as stop:
                result.stopped = str(stop) or f"stopped at epoch {epoch}"
                break
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise Diverged(epoch, train_loss if not math.isfinite(train_loss) else val_loss)
    finally:
        epoch_runner.close()
    result.metrics = final_metrics(model, data, loss)
    result.seconds = time.perf_counter() - start
    return result


@dataclass(frozen=True)
class _Setup:
    """What an epoch runner trains: the model, its optimizer, the data, the loss, the batches."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    data: Dataset
    loss: str
    batch_size: int
    jit: bool


def runner_for(s: _Setup) -> Any:
    """The compiled epoch for this trial: shared with earlier trials of the same architecture
    where the optimizer allows it (no tracing after the first), else traced for this trial."""
    if streamed(s.data.train):
        return _streamed_epochs(s)
    key = shared_key(s)
    return _compiled_epochs(s) if key is None else _shared_epochs(s, key)


class _compiled_epochs:  # noqa: N801 - called like the function it wraps
    """The compiled epoch, bound to one data set: perm in, (train loss, val loss) out."""

    def __init__(self, s: _Setup) -> None:
        s.optimizer.build(s.model.trainable_variables)
        fn = loss_function(s.loss)
        self.run_epoch = _epoch_function(s.model, s.optimizer, fn, s.batch_size, s.jit)
        d = s.data
        self.args = [tf.constant(a) for a in (d.train.x, d.train.y, d.val.x, d.val.y)]
        self.perm = None

    def __call__(self, perm: np.ndarray) -> tuple[float, float]:
        x, y, x_val, y_val = self.args
        self.perm = tf.constant(perm)
        return tuple(float(v) for v in self.run_epoch(x, y, self.perm, x_val, y_val))

    def close(self) -> None:
        """Release the traced graphs once (a no-op when nothing was traced)."""
        if self.perm is not None and self.run_epoch.experimental_get_tracing_count():
            x, y, x_val, y_val = self.args
            with contextlib.suppress(Exception):  # a trace that failed left no graph to free
                concrete = self.run_epoch.get_concrete_function(x, y, self.perm, x_val, y_val)
                release_graphs(concrete.graph)
        self.perm = None


# Epoch graphs shared across trials, by architecture: each new graph costs a trace and
# Grappler's pass (~0.1-0.2 s). The least recently used go past SHARED_MAX: each keeps ~2 MB,
# and with 32 a worker on the default space grew +68 MB over trials 5-30 (8: +30 MB; bench).
_SHARED: OrderedDict[tuple, Callable] = OrderedDict()
SHARED_MAX = 8


def shared_key(s: _Setup) -> tuple | None:
    """What makes two trials' epochs one graph, or None when this trial cannot share one.

    Sharing takes plain SGD (its update is written out in the graph, exactly as Keras's
    `assign_sub(gradient * learning_rate)`), float32 weights and no non-trainable state, and
    built-in Keras layers only: their config says all they compute, so equal configs compute
    equally (a custom layer may keep what its config leaves out).
    """
    m, o = s.model, s.optimizer
    plain = type(o) is keras.optimizers.SGD and not (
        o.momentum or o.nesterov or o.weight_decay or o.clipnorm or o.clipvalue
        or o.global_clipnorm or o.use_ema or o.loss_scale_factor
        or o.gradient_accumulation_steps
        or isinstance(o._learning_rate, keras.optimizers.schedules.LearningRateSchedule)
    )  # fmt: skip
    if not plain or m.non_trainable_variables or not _builtin(m):
        return None
    if any(v.dtype != "float32" for v in m.trainable_variables):
        return None
    return (m.to_json(), s.loss, s.batch_size, s.jit)


def _builtin(layer: Any) -> bool:
    """Whether `layer` and every layer inside it are Keras's own classes."""
    if not type(layer).__module__.startswith("keras."):
        return False
    return all(_builtin(inner) for inner in getattr(layer, "layers", ()))


class _shared_epochs:  # noqa: N801 - called like the function it wraps
    """An epoch graph shared by trials of one architecture: it takes the trial's weights and
    learning rate as arguments (the first such model computes, stateless), carries the weights
    through the steps as one vector and writes them back at the end of the epoch."""

    def __init__(self, s: _Setup, key: tuple) -> None:
        s.optimizer.build(s.model.trainable_variables)
        if key in _SHARED:
            _SHARED.move_to_end(key)
        else:
            _SHARED[key] = _shared_epoch_function(
                s.model, loss_function(s.loss), s.batch_size, s.jit
            )
            while len(_SHARED) > SHARED_MAX:
                _SHARED.popitem(last=False)
        self.run_epoch = _SHARED[key]
        d = s.data
        self.args = [tf.constant(a) for a in (d.train.x, d.train.y, d.val.x, d.val.y)]
        self.weights = [v.value for v in s.model.trainable_variables]  # the tf.Variables
        self.optimizer = s.optimizer
        full, rest = divmod(len(d.train.x), s.batch_size)
        self.steps = full + (1 if rest else 0)

    def __call__(self, perm: np.ndarray) -> tuple[float, float]:
        x, y, x_val, y_val = self.args
        lr = self.optimizer._learning_rate.value  # the variable: read in the graph
        out = self.run_epoch(x, y, tf.constant(perm), x_val, y_val, lr, self.weights)
        self.optimizer.iterations.assign_add(self.steps)  # as `apply` counts, once per step
        return tuple(float(v) for v in out)

    def close(self) -> None:
        """Nothing to release: the graph serves the next trial of this architecture."""


def _shared_epoch_function(template: keras.Model, loss_fn: Callable, batch_size: int, jit: bool):  # noqa: ANN202
    """`_epoch_function` with the weights as arguments: the same arithmetic, in the same order.

    The steps carry the weights as one flat vector: each loop variable costs the lowered while
    loop a handful of control ops per step, and splitting and joining one vector is cheaper than
    carrying ten tensors (6-17% less CPU per epoch on the tutorial's model, bit-identical:
    `w - g * lr` is elementwise, so it is the same on the vector as on each weight).
    """
    shapes = [tuple(v.shape) for v in template.trainable_variables]
    sizes = [math.prod(shape) for shape in shapes]

    def unpack(flat):  # noqa: ANN001, ANN202 - a tensor in, tensors out
        parts = tf.split(flat, sizes)
        return [p if len(s) == 1 else tf.reshape(p, s) for p, s in zip(parts, shapes, strict=True)]

    def pack(tensors):  # noqa: ANN001, ANN202
        return tf.concat([t if t.shape.rank == 1 else tf.reshape(t, [-1]) for t in tensors], 0)

    def step(flat, lr, xb, yb):  # noqa: ANN001, ANN202 - tensors in, tensors out
        weights = unpack(flat)
        with tf.GradientTape() as tape:
            tape.watch(weights)
            pred, _ = template.stateless_call(weights, [], xb, training=True)
            loss = tf.reduce_mean(loss_fn(yb, pred))
        return flat - pack(tape.gradient(loss, weights)) * lr, loss

    @tf.function(jit_compile=jit)
    def run_epoch(x, y, perm, x_val, y_val, lr_var, variables):  # noqa: ANN001, ANN202
        n = x.shape[0]
        lr = lr_var.read_value()
        flat = pack([v.read_value() for v in variables])
        xb, yb, last = _batches(x, y, perm, batch_size)
        total = tf.constant(0.0)
        for i in tf.range(xb.shape[0]):
            flat, loss = step(flat, lr, xb[i], yb[i])
            total += loss * batch_size
        if last:
            flat, loss = step(flat, lr, *last)
            total += loss * last[0].shape[0]
        weights = unpack(flat)
        for v, w in zip(variables, weights, strict=True):
            v.assign(w)
        pred, _ = template.stateless_call(weights, [], x_val, training=False)
        return total / n, tf.reduce_mean(loss_fn(y_val, pred))

    return run_epoch


class _streamed_epochs:  # noqa: N801 - called like the function it wraps
    """The compiled steps on a training split read from its file: each call of the graph takes
    a chunk of whole batches (CHUNK_BYTES, in our permutation), so memory holds one chunk, not
    the split, and the Python overhead is per chunk, not per step; validation chunk by chunk."""

    def __init__(self, s: _Setup) -> None:
        s.optimizer.build(s.model.trainable_variables)
        self.s, self.loss_fn = s, loss_function(s.loss)
        step = _step_function(s.model, s.optimizer, self.loss_fn)

        # reduce_retracing: the last chunk's batch count and the partial batch share one trace
        @tf.function(jit_compile=s.jit, reduce_retracing=True)
        def run_steps(xb, yb):  # noqa: ANN001, ANN202 - [steps, batch, ...] blocks in, a sum out
            total = tf.constant(0.0)
            for i in tf.range(tf.shape(xb)[0]):
                total += step(xb[i], yb[i]) * tf.cast(tf.shape(xb[i])[0], tf.float32)
            return total

        self.run_steps = run_steps

    def __call__(self, perm: np.ndarray) -> tuple[float, float]:
        train, bs = self.s.data.train, self.s.batch_size
        total = 0.0
        for part in chunks(len(perm), chunk_rows(train, bs)):
            x, y = read_rows(train, perm[part])
            full = len(x) // bs * bs
            if full:
                total += float(self.run_steps(*(_blocks(a[:full], bs) for a in (x, y))))
            if full < len(x):  # the epoch's partial last batch
                total += float(self.run_steps(x[None, full:], y[None, full:]))
        return total / len(perm), split_loss(self.s.model, self.s.data.val, self.loss_fn)

    def close(self) -> None:
        """Nothing to release by hand: a streamed trial is long, its graphs a few MB."""


def _blocks(a: np.ndarray, batch_size: int) -> np.ndarray:
    """Whole batches of rows as one [batches, batch_size, ...] block (a view, no copy)."""
    return a.reshape(len(a) // batch_size, batch_size, *a.shape[1:])


class _Batches(keras.utils.PyDataset):
    """A split's rows in our permutation, a batch at a time, for `model.fit` on a streamed split."""

    def __init__(self, split: Split, index: np.ndarray, batch_size: int) -> None:
        super().__init__()
        self.split, self.index, self.batch_size = split, index, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return read_rows(self.split, self.index[i * self.batch_size : (i + 1) * self.batch_size])


class _fit_epochs:  # noqa: N801 - called like the function it replaces
    """Keras's own `fit`, one epoch per call on our permutation: same losses, hooks and seeds."""

    def __init__(self, s: _Setup) -> None:
        s.model.compile(optimizer=s.optimizer, loss=keras_loss(s.loss), jit_compile=False)
        self.model, self.data, self.batch_size = s.model, s.data, s.batch_size
        self.loss_fn = loss_function(s.loss)

    def __call__(self, perm: np.ndarray) -> tuple[float, float]:
        d = self.data
        if streamed(d.train):  # batches read from the file in our order, a PyDataset's way
            batches = _Batches(d.train, perm, self.batch_size)
            history = self.model.fit(batches, epochs=1, shuffle=False, verbose=0)
            return float(history.history["loss"][-1]), split_loss(self.model, d.val, self.loss_fn)
        history = self.model.fit(
            d.train.x[perm], d.train.y[perm], self.batch_size, epochs=1, shuffle=False, verbose=0
        )
        val = self.model.evaluate(d.val.x, d.val.y, batch_size=len(d.val.x), verbose=0)
        return float(history.history["loss"][-1]), float(val)

    def close(self) -> None:
        """Nothing to release: Keras owns fit's graphs."""


def fit_like_tutorial(
    model: keras.Model, data: Dataset, epochs: int, batch_size: int, lr: float = 0.01
) -> float:
    """The tutorial's `compile('sgd')` + `fit` + `evaluate`, kept as the benchmark's reference."""
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    model.fit(data.train.x, data.train.y, batch_size=batch_size, epochs=epochs, verbose=0)
    return float(model.evaluate(data.train.x, data.train.y, verbose=0))
