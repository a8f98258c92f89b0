"""Keras model and optimizer builders, from plain arguments (never from a config or a trial)."""

from __future__ import annotations

from sweep.backend import keras
from sweep.config import ACTIVATIONS, OPTIMIZERS


def build_mlp(depth: int, width: int, activation: str, input_dim: int = 1) -> keras.Sequential:
    """`depth` hidden Dense layers of `width` units and a linear output: the tutorial's shape."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    layers = [keras.Input(shape=(input_dim,))]
    layers += [keras.layers.Dense(width, activation=activation) for _ in range(depth)]
    layers.append(keras.layers.Dense(1))
    return keras.Sequential(layers, name=f"mlp_{depth}x{width}_{activation}")


def build_optimizer(name: str, lr: float, momentum: float = 0.0) -> keras.optimizers.Optimizer:
    """Keras optimizer by name; 'sgd' with lr 0.01 and no momentum is Keras's 'sgd' default."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}")
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    return keras.optimizers.RMSprop(learning_rate=lr, momentum=momentum)
