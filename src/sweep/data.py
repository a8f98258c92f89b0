"""Train/validation/test arrays for y = sin(x). numpy only: no Keras, no MLflow."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Inputs and targets as float32 column vectors, the shape Dense(1) layers take."""

    x: np.ndarray
    y: np.ndarray

    def digest(self) -> str:
        """Content hash, recorded with each run so a rerun can prove it saw the same data."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.x).tobytes())
        h.update(np.ascontiguousarray(self.y).tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split


def make_dataset(
    x_min: float, x_max: float, step: float, n_val: int, n_test: int, seed: int
) -> Dataset:
    """The tutorial's grid for training; seeded uniform draws from the same interval to evaluate."""
    x = np.arange(x_min, x_max, step).astype(np.float32)
    rng = np.random.default_rng(seed)
    x_val = rng.uniform(x_min, x_max, n_val).astype(np.float32)
    x_test = rng.uniform(x_min, x_max, n_test).astype(np.float32)
    return Dataset(train=_split(x), val=_split(x_val), test=_split(x_test))


def _split(x: np.ndarray) -> Split:
    x = x.reshape(-1, 1)
    return Split(x=x, y=np.sin(x).astype(np.float32))
