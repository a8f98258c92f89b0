"""The models part: `model.fit` against our compiled loop on the same epochs for the shipped
CNN (digit images) and the LSTM and Conv1D (sine windows), and a data set bigger than a memory
budget (`data=npy`) trained by one `baseline` process whose peak RSS must stay under it.

Why: issue 23 asks the loop to be at least 2x `model.fit` on each model, or the measured reason
it cannot be; and streamed files to keep a worker's memory under a budget the data exceeds. The
steady epochs (tracing left out) say where the time goes: the loop removes per-step Python
overhead, so when `model.fit`'s steady epoch is less than twice the loop's, its kernels, not
its overhead, are most of its time, and no loop can be 2x.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, Row, Section, clean_env, compose_cfg, rotated, say, verdict

WHAT = "model.fit vs our loop on the CNN, LSTM and Conv1D; a streamed file over a memory budget"
PROBLEMS = {
    "cnn": ("data=digits_images", "model=cnn"),
    "lstm": ("data=sine_sequence", "model=lstm"),
    "conv1d": ("data=sine_sequence", "model=conv1d"),
}
SPEEDUP = 2.0  # issue 23: our loop against model.fit, each model
BUDGET_MB = 1280  # the streamed data set's worker must stay under this peak RSS
FILE_MB = 1536  # ... while its file is bigger than the budget
FEATURES = 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The models part's sizes."""
    p.add_argument("--models-seeds", type=int, default=3, help="seeds per model (default 3)")
    p.add_argument("--models-epochs", type=int, default=50, help="epochs per model (default 50)")
    p.add_argument(
        "--models-file-mb", type=int, default=FILE_MB, help="the streamed file's size in MB"
    )
    p.add_argument("--models-budget-mb", type=int, default=BUDGET_MB, help="its RSS budget in MB")


def run(args: argparse.Namespace, store: Path) -> Section:
    """The models part at the command line's sizes."""
    speeds = {
        name: bench_model(name, args.models_seeds, args.models_epochs, store / name, args.set)
        for name in PROBLEMS
    }
    memory = bench_streamed(store / "npy", args.models_file_mb)
    return models_section(speeds, memory, args.models_epochs, args.models_budget_mb)


# --------------------------------------------------------------------------- speed


def time_model(
    seed: int, cfg: Any, data: Any, epochs: int, loop: bool
) -> tuple[float, float, float]:
    """Seconds in all, the median steady epoch (the first, with its tracing, left out) and the
    final validation loss, for the configured model trained by our loop or by `model.fit`."""
    from sweep.config.checks import loss_name
    from sweep.core.objects import build
    from sweep.run import build_model
    from sweep.train.backend import keras
    from sweep.train.loop import keras_loss, reset_state, train

    reset_state(seed)
    model, opt = build_model(cfg, data), build(cfg.optimizer, "optimizer")
    bs, loss, ends = cfg.trainer.batch_size, loss_name(cfg), []
    start = time.perf_counter()
    if loop:
        hook = [lambda _log: ends.append(time.perf_counter())]
        val = train(model, opt, data, epochs, bs, seed, hooks=hook, loss=loss).history[-1].val_loss
    else:
        stamp = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda *_: ends.append(time.perf_counter())
        )
        model.compile(optimizer=opt, loss=keras_loss(loss))
        model.fit(data.train.x, data.train.y, bs, epochs, verbose=0, callbacks=[stamp])
        val = model.evaluate(data.val.x, data.val.y, batch_size=len(data.val.x), verbose=0)
    seconds = time.perf_counter() - start
    steady = float(np.median(np.diff(ends))) if len(ends) > 1 else seconds
    return seconds, steady, float(val)


def bench_model(
    name: str, seeds: int, epochs: int, store: Path, overrides: Sequence[str] = ()
) -> dict[str, list[float]]:
    """Per seed, model.fit and our loop back to back on one shipped model, order rotating:
    `fit_s`, `fit_epoch`, `fit_val` and the same for `loop`."""
    from sweep.train.data import dataset_for
    from sweep.train.loop import configure_tensorflow

    cfg = compose_cfg(store, *overrides, *PROBLEMS[name])
    configure_tensorflow(cfg.trainer.threads, cfg.trainer.deterministic)
    data = dataset_for(cfg)
    steady: dict[str, list[float]] = {"fit_epoch": [], "loop_epoch": []}

    def contender(loop: bool) -> Callable[[int], tuple[float, float]]:
        def once(seed: int) -> tuple[float, float]:
            seconds, epoch, val = time_model(seed, cfg, data, epochs, loop)
            steady["loop_epoch" if loop else "fit_epoch"].append(epoch)
            return seconds, val

        return once

    out = rotated({"fit": contender(False), "loop": contender(True)}, seeds, name, "val")
    return {**out, **steady}


# --------------------------------------------------------------------------- memory

# A `baseline` on the file: the process a study's worker is, MLflow tracking and all. Validation
# and test are 2% each: run.py's predict_ms and plots still take the validation split at once.
STREAMED_ARGS = (
    "data=npy", "data.val_fraction=0.02", "data.test_fraction=0.02", "model.depth=2",
    "model.width=16", "trainer.epochs=1", "trainer.batch_size=1024",
)  # fmt: skip


def write_file(folder: Path, size_mb: int, seed: int = 0) -> tuple[Path, Path]:
    """x [rows, FEATURES] float32 of `size_mb` MB and y = a noisy linear map, block by block."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = size_mb * 2**20 // (4 * FEATURES)
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(FEATURES, 1)).astype(np.float32) / np.sqrt(FEATURES)
    x = np.lib.format.open_memmap(folder / "x.npy", "w+", np.float32, (rows, FEATURES))
    y = np.lib.format.open_memmap(folder / "y.npy", "w+", np.float32, (rows, 1))
    for a in range(0, rows, 1 << 16):
        block = rng.normal(size=(min(1 << 16, rows - a), FEATURES)).astype(np.float32)
        x[a : a + len(block)], y[a : a + len(block)] = block, block @ w
    x.flush(), y.flush()
    return folder / "x.npy", folder / "y.npy"


# `python -m sweep` that writes its own VmHWM at exit. Not wait4's ru_maxrss: a child's counts
# the parent's image it was forked from before exec (2.6 GB here, the bench's own).
PEAK_AT_EXIT = """
import atexit, runpy, sys
from pathlib import Path
out = sys.argv.pop(1)
def peak():
    status = Path("/proc/self/status").read_text().splitlines()
    Path(out).write_text(next(s for s in status if s.startswith("VmHWM:")).split()[1])
atexit.register(peak)
sys.argv[0] = "sweep"
runpy.run_module("sweep", run_name="__main__", alter_sys=True)
"""


def bench_streamed(store: Path, size_mb: int) -> dict[str, float]:
    """The file's size, and the baseline process's peak RSS (its own VmHWM) and seconds."""
    xp, yp = write_file(store / "data", size_mb)
    args = [*STREAMED_ARGS, f"data.x={xp}", f"data.y={yp}", f"paths.store={store}"]
    peak = store / "peak_kb"
    cmd = [sys.executable, "-c", PEAK_AT_EXIT, str(peak), "baseline", *args]
    say(f"  models part: baseline on a {xp.stat().st_size / 2**20:.0f} MB file ...")
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the streamed baseline failed ({out.returncode}): {out.stderr[-500:]}")
    return {
        "file_mb": xp.stat().st_size / 2**20,
        "peak_mb": int(peak.read_text()) / 1024,
        "seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------- the table


def models_section(
    speeds: dict[str, dict[str, list[float]]], memory: dict[str, float], epochs: int, budget: float
) -> Section:
    """One speed-up row per model (medians over seeds) and the streamed file's memory row."""
    n = len(next(iter(speeds.values()))["fit_s"])
    sec = Section(f"Real models: `model.fit` vs our loop ({epochs} epochs, median of {n} "
                  "seeds), and a file bigger than memory")  # fmt: skip
    for name, r in speeds.items():
        med = {k: statistics.median(v) for k, v in r.items()}
        speedup, steady = med["fit_s"] / med["loop_s"], med["fit_epoch"] / med["loop_epoch"]
        sec.rows.append(Row(
            f"{' '.join(PROBLEMS[name])}: `model.fit` / our loop (tracing included); "
            f"steady epoch; val loss",
            f"{med['fit_s']:.2f} s / {med['loop_s']:.2f} s = {speedup:.1f}x; "
            f"{1000 * med['fit_epoch']:.0f} / {1000 * med['loop_epoch']:.0f} ms = {steady:.1f}x; "
            f"{med['fit_val']:.4f} / {med['loop_val']:.4f}",
            f">= {SPEEDUP:g}x", verdict(speedup >= SPEEDUP),
        ))  # fmt: skip
    ok = memory["file_mb"] > budget and memory["peak_mb"] < budget
    sec.rows.append(Row(
        f"`data=npy` baseline (1 epoch, batch 1024, MLP 2x16) on a {memory['file_mb']:.0f} MB "
        f"file: peak RSS of the process ({memory['seconds']:.0f} s)",
        f"{memory['peak_mb']:.0f} MB", f"< {budget:g} MB, file > budget", verdict(ok),
    ))  # fmt: skip
    sec.notes.append(
        "steady epoch: the median epoch after the first. Our loop's steady epoch is one graph "
        "call, so it is the model's own compute; when `model.fit`'s is less than twice it, "
        "`model.fit`'s per-step overhead is under half its time and 2x cannot be reached."
    )
    return sec
