"""The Keras model builders, from plain arguments (never from a config or a trial).

conf/model/*.yaml name them (`_target_: sweep.train.model.build_mlp`); a user's own builder is
named the same way. Every builder gets the data's sizes plus its own config keys: `input_shape`
(one example's shape, e.g. (8, 8, 1)) and/or `input_dim` (values per example, the MLP's width
in), whichever its signature takes (`shape_kwargs`), and `output_dim` (targets, or classes: a
classifier returns logits, no softmax). `check_input_shape` refuses a model whose input does not
fit the data before anything trains.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from sweep.core.errors import ConfigError
from sweep.train.backend import keras
from sweep.train.data import Dataset


def build_mlp(
    depth: int,
    width: int,
    activation: str,
    input_dim: int = 1,
    output_dim: int = 1,
    input_shape: Sequence[int] | None = None,
    widths: Sequence[int] | None = None,
) -> keras.Sequential:
    """`depth` hidden Dense layers of `width` units and a linear output: the tutorial's shape.

    `widths` gives each hidden layer its own width (the first `depth` are used). An input of
    more than one axis (an image) is flattened first. An unknown activation is Keras's own
    ValueError; the config check names the allowed ones.
    """
    shape = tuple(input_shape or (input_dim,))
    units = list(widths[:depth]) if widths else [width] * depth
    layers = [keras.Input(shape=shape)]
    if len(shape) > 1:
        layers.append(keras.layers.Flatten())
    layers += [keras.layers.Dense(u, activation=activation) for u in units]
    layers.append(keras.layers.Dense(output_dim))
    return keras.Sequential(layers, name=_mlp_name(depth, width, units, activation))


def _mlp_name(depth: int, width: int, units: list[int], activation: str) -> str:
    """The tutorial's name (mlp_4x20_tanh), or the widths when they differ (mlp_32-16_relu)."""
    same = all(u == width for u in units)
    shape = f"{depth}x{width}" if same else "-".join(map(str, units))
    return f"mlp_{shape}_{activation}"


def build_cnn(
    blocks: int,
    filters: int,
    kernel_size: int,
    dropout: float,
    dense: int,
    input_shape: Sequence[int] = (8, 8, 1),
    output_dim: int = 10,
    activation: str = "relu",
) -> keras.Sequential:
    """`blocks` Conv2D blocks (filters doubling per block, 2x2 max-pooling while the image is
    larger than 2x2), dropout, one Dense layer of `dense` units and a linear output."""
    layers: list = [keras.Input(shape=tuple(input_shape))]
    size = min(input_shape[:2])
    for b in range(blocks):
        conv = keras.layers.Conv2D(
            filters * 2**b, kernel_size, padding="same", activation=activation
        )
        layers.append(conv)
        if size > 2:
            layers.append(keras.layers.MaxPooling2D(2))
            size //= 2
    layers += [keras.layers.Flatten(), keras.layers.Dropout(dropout)]
    layers += [keras.layers.Dense(dense, activation=activation), keras.layers.Dense(output_dim)]
    return keras.Sequential(layers, name=f"cnn_{blocks}x{filters}k{kernel_size}")


def build_lstm(
    units: int, layers: int, input_shape: Sequence[int] = (32, 1), output_dim: int = 1
) -> keras.Sequential:
    """`layers` stacked LSTMs of `units` (all but the last return sequences), a linear output."""
    stack: list = [keras.Input(shape=tuple(input_shape))]
    stack += [keras.layers.LSTM(units, return_sequences=i < layers - 1) for i in range(layers)]
    stack.append(keras.layers.Dense(output_dim))
    return keras.Sequential(stack, name=f"lstm_{layers}x{units}")


def build_conv1d(
    filters: int,
    kernel_size: int,
    layers: int,
    input_shape: Sequence[int] = (32, 1),
    output_dim: int = 1,
    activation: str = "relu",
) -> keras.Sequential:
    """`layers` causal Conv1D layers of `filters`, flattened (where in the window a feature was
    seen matters for what comes next), a linear output."""
    stack: list = [keras.Input(shape=tuple(input_shape))]
    stack += [
        keras.layers.Conv1D(filters, kernel_size, padding="causal", activation=activation)
        for _ in range(layers)
    ]
    stack += [keras.layers.Flatten(), keras.layers.Dense(output_dim)]
    return keras.Sequential(stack, name=f"conv1d_{layers}x{filters}k{kernel_size}")


def shape_kwargs(builder: Any, data: Dataset) -> dict[str, Any]:
    """The data's sizes the builder's signature takes: `input_shape`, `input_dim`, `output_dim`
    (all three to a builder with **kwargs; `output_dim` always, as before)."""
    offered = {
        "input_shape": data.input_shape,
        "input_dim": data.input_dim,
        "output_dim": data.output_dim,
    }
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # no signature to read: what every builder always got
        return {k: offered[k] for k in ("input_dim", "output_dim")}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return offered
    return {k: v for k, v in offered.items() if k in params or k == "output_dim"}


def check_input_shape(model: Any, given: tuple[int, ...], name: str) -> None:
    """A model whose Input disagrees with the data fails here, before training, in one line
    naming both shapes (not Keras's traceback from the first batch)."""
    try:
        expected = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        return  # built on first call (no keras.Input): its first batch tells
    fits = len(expected) == len(given)
    fits = fits and all(e in (None, g) for e, g in zip(expected, given, strict=True))
    if not fits:
        raise ConfigError(
            f"model {model.name} takes inputs of shape {expected}, but data {name} has "
            f"{given} (a builder with an `input_shape` argument gets the data's own)"
        )
