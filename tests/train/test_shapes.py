"""Array-shaped data: images and sequences keep their shape from the data set to the model, and
the compiled loop trains Conv and recurrent layers (no model.fit fallback), exactly again."""

from __future__ import annotations

import numpy as np
import pytest
from keras.optimizers import SGD

from sweep.core.errors import ConfigError
from sweep.train.data import digits, digits_images, from_arrays, sine_sequence
from sweep.train.loop import configure_tensorflow, reset_state, train
from sweep.train.model import build_cnn, build_conv1d, build_lstm, build_mlp


def test_digit_images_keep_their_shape_and_are_the_same_pixels_as_the_table():
    images, table = digits_images(standardize=False), digits(standardize=False)
    assert images.input_shape == (8, 8, 1) and images.input_dim == 64
    assert images.train.x.shape == (len(table.train.x), 8, 8, 1)
    np.testing.assert_array_equal(images.train.x.reshape(-1, 64), table.train.x)
    assert images.val.digest() == digits_images(standardize=False).val.digest()


@pytest.mark.parametrize(
    ("standardize", "mean_shape"), [("channel", (1,)), ("feature", (8, 8, 1)), (True, (8, 8, 1))]
)
def test_images_are_standardised_per_channel_or_per_pixel(standardize, mean_shape):
    d = digits_images(standardize=standardize)
    assert np.asarray(d.scaling["x_mean"]).shape == mean_shape
    assert abs(float(d.train.x.mean())) < 1e-4
    if standardize == "channel":
        assert float(d.train.x.std()) == pytest.approx(1.0, abs=1e-4)


def test_standardisation_off_and_a_wrong_mode_is_one_line():
    assert digits_images(standardize="off").scaling == {}
    assert float(digits_images(standardize=False).train.x.max()) == 16.0
    with pytest.raises(ConfigError, match="data.standardize='pixel' is not one of"):
        from_arrays(np.zeros((20, 3)), np.zeros(20), standardize="pixel")


def test_sequence_windows_predict_the_next_values_and_split_in_time_order():
    d = sine_sequence(n_points=400, window=16, horizon=2, noise=0.0, standardize="off")
    assert d.input_shape == (16, 1) and d.train.y.shape[1] == 2 == d.output_dim
    assert sum(len(s.x) for s in (d.train, d.val, d.test)) == 400 - 16 - 2 + 1
    # each target is the series' next values after its window: window k+1 starts one step later
    np.testing.assert_allclose(d.train.x[1, -1, 0], d.train.y[0, 0], rtol=1e-6)
    # time order: the first validation window starts right after the last training window
    np.testing.assert_allclose(d.val.x[0, :-1, 0], d.train.x[-1, 1:, 0], rtol=1e-6)
    scaled = sine_sequence(n_points=400, window=16)
    assert np.asarray(scaled.scaling["x_mean"]).shape == (1,)


def test_the_mlp_flattens_an_image_and_keeps_the_tutorials_shape_otherwise():
    assert build_mlp(4, 20, "tanh").name == "mlp_4x20_tanh"
    assert build_mlp(4, 20, "tanh", input_shape=(1,)).input_shape == (None, 1)
    image = build_mlp(2, 8, "relu", input_shape=(8, 8, 1), output_dim=10)
    assert image.input_shape == (None, 8, 8, 1) and image.output_shape == (None, 10)
    layered = build_mlp(2, 8, "relu", widths=[32, 16, 99])
    assert [layer.units for layer in layered.layers[:-1]] == [32, 16]
    assert layered.name == "mlp_32-16_relu"


_DIGITS = digits_images(standardize=False).train  # 1,257 images: the first 300 train quickly
TINY_IMAGES = from_arrays(_DIGITS.x[:300], _DIGITS.y[:300], "classification", standardize="channel")
TINY_SEQUENCE = sine_sequence(n_points=300, window=12)


@pytest.mark.parametrize(
    ("data", "make"),
    [
        (TINY_IMAGES, lambda d: build_cnn(2, 4, 3, 0.25, 16, d.input_shape, d.output_dim)),
        (TINY_SEQUENCE, lambda d: build_lstm(8, 2, d.input_shape, d.output_dim)),
        (TINY_SEQUENCE, lambda d: build_conv1d(8, 3, 2, d.input_shape, d.output_dim)),
    ],
    ids=["cnn", "lstm", "conv1d"],
)
def test_conv_and_recurrent_models_train_in_the_compiled_loop_exactly_again(data, make):
    configure_tensorflow(None, deterministic=True)

    def once() -> tuple[list, float | None]:
        reset_state(0)
        model = make(data)
        loss = "crossentropy" if data.task == "classification" else "mse"
        result = train(model, SGD(learning_rate=0.05), data, 2, 32, 0, loss=loss)
        assert result.fallback is None  # trained by our loop, not model.fit
        return [(h.train_loss, h.val_loss) for h in result.history], result.metrics

    first, again = once(), once()
    assert first == again
    assert first[0][1][0] < first[0][0][0]  # it learns
