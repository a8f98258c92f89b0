"""The Keras model builder, from plain arguments (never from a config or a trial).

conf/model/mlp.yaml names it (`_target_: sweep.train.model.build_mlp`); a user's own builder is
named the same way. Every builder is called with the data's `input_dim` and `output_dim`
(features in, targets or classes out; a classifier returns logits, no softmax) plus its own
config keys.
"""

from __future__ import annotations

from sweep.train.backend import keras


def build_mlp(
    depth: int, width: int, activation: str, input_dim: int = 1, output_dim: int = 1
) -> keras.Sequential:
    """`depth` hidden Dense layers of `width` units and a linear output: the tutorial's shape.

    An unknown activation is Keras's own ValueError; the config check names the allowed ones.
    """
    layers = [keras.Input(shape=(input_dim,))]
    layers += [keras.layers.Dense(width, activation=activation) for _ in range(depth)]
    layers.append(keras.layers.Dense(output_dim))
    return keras.Sequential(layers, name=f"mlp_{depth}x{width}_{activation}")
