"""The digits part: `model.fit` against our compiled loop on `data=digits` (64 -> 10 classes,
softmax cross-entropy), 50 epochs, seed by seed: speed and validation accuracy.

Why: the fit part's speed-up is on one regression problem; this shows the loop is general (a
classification loss, another shape), at the same accuracy. No target: it informs, it does not
gate. It runs at the fit part's `--seeds` and `--epochs`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import Row, Section, compose_cfg, rotated

WHAT = "model.fit vs our loop on digits"


def run(args: argparse.Namespace, store: Path) -> Section:
    """The digits part at the command line's sizes (the fit part's seeds and epochs)."""
    return digits_section(
        bench_digits(args.seeds, args.epochs, store / "digits", args.set), args.epochs
    )


def time_digits(
    seed: int, data: Any, epochs: int, batch_size: int, loop: bool
) -> tuple[float, float]:
    """Seconds and validation accuracy of the tutorial's MLP (64 -> 10 logits) on digits."""
    from sweep.train.backend import keras
    from sweep.train.loop import reset_state, train
    from sweep.train.model import build_mlp

    reset_state(seed)
    model = build_mlp(4, 20, "tanh", data.input_dim, data.output_dim)
    opt = keras.optimizers.SGD(learning_rate=0.01)
    start = time.perf_counter()
    if loop:
        accuracy = train(model, opt, data, epochs, batch_size, seed, loss="crossentropy").metrics[
            "val_accuracy"
        ]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
        model.fit(data.train.x, data.train.y, batch_size=batch_size, epochs=epochs, verbose=0)
        accuracy = model.evaluate(data.val.x, data.val.y, verbose=0)[1]
    return time.perf_counter() - start, float(accuracy)


def bench_digits(
    seeds: int, epochs: int, store: Path, overrides: Sequence[str] = ()
) -> dict[str, list[float]]:
    """Per seed, model.fit and our loop back to back on digits, order alternating."""
    from sweep.train.data import dataset_for
    from sweep.train.loop import configure_tensorflow

    cfg = compose_cfg(store, *overrides, "data=digits")
    configure_tensorflow(cfg.trainer.threads, cfg.trainer.deterministic)
    data, bs = dataset_for(cfg), cfg.trainer.batch_size
    runs = {
        "fit": lambda seed: time_digits(seed, data, epochs, bs, False),
        "loop": lambda seed: time_digits(seed, data, epochs, bs, True),
    }
    return rotated(runs, seeds, "digits", "acc")


def digits_section(r: dict[str, list[float]], epochs: int) -> Section:
    """Medians over seeds, as in part 1; no target: the row shows the loop is general."""
    med = {k: statistics.median(v) for k, v in r.items()}
    n = len(r["fit_s"])
    sec = Section(f"5. `model.fit` vs our loop on digits ({epochs} epochs, median of {n} seeds)")
    sec.rows += [
        Row("`model.fit` (softmax cross-entropy, SGD 0.01, batch 100)", f"{med['fit_s']:.2f} s"),
        Row("our loop (`loss=crossentropy`, tracing included)", f"{med['loop_s']:.2f} s"),
        Row("speed-up", f"{med['fit_s'] / med['loop_s']:.1f}x"),
        Row("validation accuracy: `model.fit` / our loop",
            f"{med['fit_acc']:.4f} / {med['loop_acc']:.4f}"),
    ]  # fmt: skip
    return sec
