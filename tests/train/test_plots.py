"""The per-trial plots: real PNGs, and a reused figure never shows the previous trial's data."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np

from sweep.train import plots

X = np.linspace(-6, 6, 300, dtype=np.float32)


def _decode(png: bytes) -> np.ndarray:
    return matplotlib.image.imread(io.BytesIO(png), format="png")


def _fresh(pred: np.ndarray, title: str) -> bytes:
    """The same plot drawn from a brand-new figure, for comparison."""
    fig = plots.prediction_figure(X, {"model": pred}, (-5, 5), title)
    png = plots._png(fig)
    plots.close(fig)
    return png


def test_reused_figures_match_freshly_drawn_ones():
    first = plots.trial_pngs(X, np.sin(X) * 0.5, (-5, 5), "a", [0.5, 0.1, 0.05], [0.4, 0.1, 0.06])
    second_pred = np.sin(X) + 0.2
    second = plots.trial_pngs(X, second_pred, (-5, 5), "b", [0.3] * 7, [0.2] * 7)
    assert set(second) == {"plots/prediction.png", "plots/loss.png"}
    for name in second:
        assert second[name][:8] == b"\x89PNG\r\n\x1a\n"
        assert first[name] != second[name]
    fresh = _decode(_fresh(second_pred, "b"))
    reused = _decode(second["plots/prediction.png"])
    assert reused.shape == fresh.shape == (600, 800, 4)
    # Identical pixels; a stale curve from the first call would differ by about 0.014.
    assert np.abs(reused - fresh).mean() < 0.001


def test_images_get_their_misclassified_examples_and_sequences_a_forecast():
    rng = np.random.default_rng(0)
    images, labels = rng.normal(size=(40, 8, 8, 1)), np.arange(40) % 10
    logits = np.eye(10)[(labels + (np.arange(40) % 4 == 0)) % 10]  # every 4th one wrong
    pngs = plots.problem_pngs("classification", images, labels, logits, [1.0, 0.5], [1.1, 0.6])
    assert set(pngs) == {"plots/confusion.png", "plots/misclassified.png", "plots/loss.png"}
    table = plots.problem_pngs("classification", images.reshape(40, -1), labels, logits, [1], [1])
    assert "plots/misclassified.png" not in table
    wrong = _decode(pngs["plots/misclassified.png"])
    assert wrong.shape[1] > wrong.shape[0]  # 10 of 40 wrong: two rows of 8 images, wider than tall
    y = np.sin(np.arange(100) / 5)[:, None]
    seq = plots.problem_pngs("regression", rng.normal(size=(100, 16, 1)), y, y + 0.1, [1], [1])
    assert set(seq) == {"plots/prediction.png", "plots/forecast.png", "plots/loss.png"}
