"""One run end to end: config -> data -> model -> training -> everything logged to a Run.

Used for the baseline, for every sweep trial and for reruns, so all runs carry the same record.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from sweep.config.checks import flatten, loss_name
from sweep.config.space import objectives
from sweep.core import console
from sweep.core.objects import build, resolve, trusted_prefixes
from sweep.tracking import Run
from sweep.train import plots, provenance
from sweep.train.data import Dataset, dataset_for
from sweep.train.loop import (
    EpochHook,
    EpochLog,
    TrainResult,
    configure_tensorflow,
    device,
    reset_state,
    set_precision,
    train,
)
from sweep.train.model import check_input_shape, shape_kwargs
from sweep.train.trainer import train_with

REPLAY_VERSION = 1
_fallbacks_said: set[str] = set()


def replay_record(cfg: DictConfig, data: Dataset, overrides: Sequence[str]) -> dict[str, Any]:
    """Everything a rerun needs besides the config itself, and what it should compare against."""
    return {
        "replay_version": REPLAY_VERSION,
        "overrides": list(overrides),
        "seeds": {
            "weights_and_shuffle": cfg.seed,
            "data": OmegaConf.select(cfg, "data.seed"),
            "sampler": OmegaConf.select(cfg, "search.sampler.seed"),
        },
        "deterministic": bool(cfg.trainer.deterministic),
        "git": provenance.git_state(),
        "versions": provenance.versions(),
        "platform": provenance.platform_info(),
        "data_digest": {
            "train": data.train.digest(),
            "val": data.val.digest(),
            "test": data.test.digest(),
        },
        # What names the data and the model: a CSV's file digest tells a rerun it changed since.
        "data": {"target": cfg.data._target_, "task": data.task, **data.source},
        "shapes": {"input": list(data.input_shape), "output": data.output_dim},
        "model_builder": cfg.model._target_,
        "runtime": runtime_state(),
        "command": shlex.join(["python", *sys.orig_argv[1:]]),
    }


def runtime_state() -> dict[str, Any]:
    """What moves float results besides the config: determinism in force, oneDNN, CPU, cores."""
    from tensorflow.python.framework import config as tf_config  # no public getter

    cpu = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
        "unknown",
    )
    return {
        "op_determinism": bool(tf_config.is_op_determinism_enabled()),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)),
        "device": device(),
        "precision": keras_policy(),
    }


def keras_policy() -> str:
    """The dtype policy the run's model was built under (float32 unless trainer.precision)."""
    from sweep.train.backend import keras

    return keras.config.dtype_policy().name


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def log_record(
    run: Run,
    cfg: DictConfig,
    data: Dataset,
    overrides: Sequence[str],
    extra_params: dict[str, Any] | None = None,
) -> None:
    """Params (flattened config, once) with the provenance tags in one write; the resolved
    config and the replay record as files, written off the training path in a worker."""
    record = replay_record(cfg, data, overrides)
    tags = {
        "git_commit": record["git"]["commit"],
        "git_dirty": record["git"]["dirty"],
        "deterministic": str(record["deterministic"]).lower(),
        "device": record["runtime"]["device"],
    }
    run.log_params({**flatten(cfg), **(extra_params or {})}, tags=tags)
    config = OmegaConf.to_container(cfg, resolve=True)

    def write() -> None:
        run.log_yaml(config, "config.yaml")
        run.log_text("\n".join(overrides) + "\n", "overrides.txt")
        run.log_json(record, "replay.json")

    run.defer(write, "config files")


def metric_hook(run: Run) -> EpochHook:
    """Buffer each epoch's losses with step=epoch; written in one batch at the end."""

    def hook(log: EpochLog) -> None:
        run.log_metrics({"train_loss": log.train_loss, "val_loss": log.val_loss}, step=log.epoch)

    return hook


def execute(
    cfg: DictConfig,
    run: Run,
    overrides: Sequence[str] = (),
    hooks: Sequence[EpochHook] = (),
) -> TrainResult:
    """Train the configured model, logging record, per-epoch losses, final metrics, model, plots."""
    configure_tensorflow(cfg.trainer.threads, cfg.trainer.deterministic)
    data = dataset_for(cfg)
    reset_state(cfg.seed)
    set_precision(OmegaConf.select(cfg, "trainer.precision", default="float32"))
    model = build_model(cfg, data)
    optimizer = build(cfg.optimizer, "optimizer")
    log_record(run, cfg, data, overrides, {"n_params": model.count_params()})
    result = fit(cfg, model, optimizer, data, [metric_hook(run), *hooks])
    if result.fallback and model.name not in _fallbacks_said:
        _fallbacks_said.add(model.name)
        console.say(
            f"note: {model.name} trains with model.fit: the compiled loop failed on it "
            f"({result.fallback})"
        )
    log_result(run, cfg, model, data, result)
    return result


# The trainer keys the project reads; any other key of `trainer` goes to a function of yours.
TRAINER_KEYS = (
    "_target_",
    "epochs",
    "batch_size",
    "loss",
    "deterministic",
    "jit_compile",
    "threads",
    "precision",
)


def fit(
    cfg: DictConfig, model: Any, optimizer: Any, data: Dataset, hooks: Sequence[EpochHook]
) -> TrainResult:
    """Train with the compiled loop, or with the function `trainer._target_` names."""
    plan = {"epochs": cfg.trainer.epochs, "batch_size": cfg.trainer.batch_size, "seed": cfg.seed}
    target = OmegaConf.select(cfg, "trainer._target_")
    if target is None:
        return train(
            model, optimizer, data, **plan, jit_compile=cfg.trainer.jit_compile, hooks=hooks,
            loss=loss_name(cfg),
        )  # fmt: skip
    function = resolve("trainer._target_", target, trusted_prefixes(cfg))
    own = OmegaConf.to_container(cfg.trainer, resolve=True)
    options = {k: v for k, v in own.items() if k not in TRAINER_KEYS}
    offered = {**plan, "optimizer": optimizer}
    return train_with(function, model, data, offered, options, hooks, loss_name(cfg))


def build_model(cfg: DictConfig, data: Dataset) -> Any:
    """The configured model for this data, refused in one line when its input does not fit."""
    trusted = trusted_prefixes(cfg)
    builder = resolve("model._target_", cfg.model._target_, trusted)
    model = build(cfg.model, "model", trusted, **shape_kwargs(builder, data))
    check_input_shape(model, data.input_shape, cfg.data.name)
    return model


def log_result(run: Run, cfg: DictConfig, model: Any, data: Dataset, result: TrainResult) -> None:
    """Final metrics, the model and the plots of one finished training.

    The plots are deferred before the model is logged: a worker renders them meanwhile (the run
    waits for them before it closes); after the timing, which they would disturb.
    """
    result.metrics["n_params"] = float(model.count_params())
    if "predict_ms" in dict(objectives(cfg)):  # ~40 ms a trial that nothing else reads
        result.metrics["predict_ms"] = predict_ms(model, data.val.x)
    result.metrics["train_seconds"] = result.seconds
    run.log_metrics(
        result.metrics, step=len(result.history)
    )  # buffered: written with the per-epoch losses when the run ends, in one batch
    if cfg.tracking.log_plots:
        log_plots(run, cfg, model, data, result)
    if data.scaling:  # `predict` maps raw inputs (and outputs) with the training split's scaling
        run.defer(lambda: run.log_json(data.scaling, "scaling.json"), "scaling")
    if cfg.tracking.log_model:
        run.log_keras(model)  # the full MLflow model is logged when it is registered


def predict_ms(model: Any, x: np.ndarray, repeats: int = 5) -> float:
    """Milliseconds to predict the validation set, measured alike in every trial: one warm-up
    call (graph tracing), then the median of `repeats` timed calls."""
    model(x, training=False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x, training=False)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def log_plots(run: Run, cfg: DictConfig, model: Any, data: Dataset, result: TrainResult) -> None:
    """Plots that fit the problem (see `problem_pngs`), and the loss curves."""
    losses = [h.train_loss for h in result.history], [h.val_loss for h in result.history]
    if cfg.data._target_ == "sweep.train.data.sine":
        lo, hi = cfg.data.x_min, cfg.data.x_max
        margin = 0.1 * (hi - lo)
        x = np.linspace(lo - margin, hi + margin, 1200, dtype=np.float32).reshape(-1, 1)
        pred = np.asarray(model(x, training=False))
        title = f"val MSE {result.val_mse:.2e}"

        def write() -> None:  # plain arrays only: safe on a worker's background writer
            for path, png in plots.trial_pngs(x, pred, (lo, hi), title, *losses).items():
                run.log_bytes(png, path)

    else:
        pred = np.asarray(model(data.val.x, training=False))

        def write() -> None:
            pngs = plots.problem_pngs(data.task, data.val.x, data.val.y, pred, *losses)
            for path, png in pngs.items():
                run.log_bytes(png, path)

    run.defer(write, "plots")
