"""The tutorial's grid for training; held-out points for validation and test."""

from __future__ import annotations

import numpy as np

from sweep.train.data import make_dataset


def test_training_set_is_the_tutorial_grid():
    d = make_dataset(-5, 5, 0.001, 100, 100, seed=1)
    expected = np.arange(-5, 5, 0.001).astype(np.float32)
    assert d.train.x.shape == (10_000, 1)
    np.testing.assert_array_equal(d.train.x.ravel(), expected)
    np.testing.assert_allclose(d.train.y.ravel(), np.sin(expected), rtol=1e-6)


def test_validation_points_are_not_training_points_and_are_seeded():
    a = make_dataset(-5, 5, 0.001, 500, 500, seed=7)
    b = make_dataset(-5, 5, 0.001, 500, 500, seed=7)
    c = make_dataset(-5, 5, 0.001, 500, 500, seed=8)
    assert not np.isin(a.val.x, a.train.x).any()
    assert not np.isin(a.test.x, a.val.x).any()
    assert a.val.digest() == b.val.digest() != c.val.digest()
    assert a.val.x.min() >= -5 and a.val.x.max() < 5
