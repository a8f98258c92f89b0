"""Config checks that run before TensorFlow or MLflow is imported.

Every user mistake in a config should come back in about a second as one line, so nothing
here imports the heavy libraries.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from sweep.config.records import MLP
from sweep.config.stores import (
    GRPC,
    STORAGE_SCHEMES,
    TRACKING_SCHEMES,
    check_proxy_beats,
    check_url,
    grpc_address,
)
from sweep.core import console
from sweep.core.errors import ConfigError, first_line
from sweep.core.keys import leaves
from sweep.core.objects import build, check_targets
from sweep.core.secrets import mask_text

if TYPE_CHECKING:
    from sweep.train.data import Dataset

ACTIVATIONS = ("tanh", "relu", "sigmoid", "elu", "gelu", "selu", "swish", "softplus", "linear")

# Losses the training loop implements, and which task each fits (null picks the first).
TASK_LOSSES = {"regression": ("mse", "mae", "huber"), "classification": ("crossentropy",)}

LOSSES = (*TASK_LOSSES["regression"], *TASK_LOSSES["classification"])

# Keras dtype policies `trainer.precision` may name (float32 when the key is absent).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


EXAMPLES = {
    "data": "sweep.train.data.sine",
    "model": "sweep.train.model.build_mlp",
    "optimizer": "keras.optimizers.SGD",
    "search.sampler": "optuna.samplers.TPESampler",
    "search.pruner": "optuna.pruners.MedianPruner",
}

MAX_POINTS = 10_000_000  # a grid beyond this is a typo (or a hostile record), not an experiment

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def prepare(cfg: DictConfig) -> DictConfig:
    """Return a resolved, validated copy with every local path made absolute."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    check_mandatory(cfg)
    try:
        store = cfg.paths.store
    except Exception as exc:  # an interpolation in the store's own path (fuzzed)
        raise ConfigError(f"cannot resolve paths.store: {first_line(exc)}") from exc
    if store is None or str(store).strip() == "":
        raise ConfigError("paths.store must name a folder, e.g. paths.store=mlruns")
    cfg.paths.store = str(Path(str(store)).expanduser().resolve())
    try:
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except Exception as exc:  # omegaconf's interpolation errors carry the key in their text
        raise ConfigError(f"cannot resolve config: {first_line(exc)}") from exc
    validate(resolved)
    lr = OmegaConf.select(resolved, "optimizer.learning_rate")
    if isinstance(lr, int):  # Keras refuses an int learning rate (`optimizer.learning_rate=1`)
        resolved.optimizer.learning_rate = float(lr)
    resolved.trainer.loss = loss_name(resolved)  # logged as chosen: `mse` for the tutorial
    return resolved


def check_mandatory(cfg: DictConfig) -> None:
    """Every `???` key still unset, named in one line (OmegaConf would raise on the first one
    read, deep in data loading, as a 40-line traceback)."""
    unset = [k for k, v in leaves(OmegaConf.to_container(cfg, resolve=False)).items() if v == "???"]
    if unset:
        verb = "is" if len(unset) == 1 else "are"
        raise ConfigError(
            f"{' and '.join(unset)} {verb} required (??? in conf/) and not set; "
            f"add {' '.join(f'{k}=...' for k in unset)} to the command"
        )


def loss_name(cfg: DictConfig) -> str:
    """trainer.loss, or the task's default when it is null: mse, or cross-entropy."""
    task = OmegaConf.select(cfg, "data.task", default="regression")
    return OmegaConf.select(cfg, "trainer.loss") or TASK_LOSSES[task][0]


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first offending key, what it holds and what is allowed."""
    check_targets(cfg)
    for key in ("data", "model", "optimizer", "search.sampler", "search.pruner"):
        _spec(cfg, key)
    check_values(cfg)
    check_data(cfg)
    for key in ("search.study_name", "tracking.registered_model"):
        safe_name(key, OmegaConf.select(cfg, key), optional=key.startswith("tracking"))
    check_storage_url(cfg)
    check_search_plan(cfg)
    if cfg.tracking.enabled:
        check_url("tracking.uri", cfg.tracking.uri, TRACKING_SCHEMES)
    from sweep.config.space import objectives, parse_space  # Hydra's grammar; light, no TensorFlow

    check_space_values(cfg, parse_space(cfg.search.space, cfg))
    objectives(cfg)
    with warnings.catch_warnings():  # Optuna's "experimental" notes: said once, by the study
        warnings.simplefilter("ignore")
        for key in ("search.sampler", "search.pruner"):  # cheap to build, so built to check
            build(OmegaConf.select(cfg, key), key)


def check_storage_url(cfg: DictConfig) -> None:
    """A SQLAlchemy URL, or a gRPC proxy's address with heartbeats it can carry."""
    url = cfg.search.storage
    if isinstance(url, str) and url.startswith(GRPC):
        grpc_address(url)
        check_proxy_beats(cfg.search.heartbeat_interval, cfg.search.grace_period)
        return
    check_url("search.storage", url, STORAGE_SCHEMES)


def check_values(cfg: DictConfig) -> None:
    """The checks of single values: cheap, so each corner of the search space gets them too."""
    if cfg.model._target_ == MLP:
        _choice(cfg, "model.activation", ACTIVATIONS)
        for key in ("model.depth", "model.width"):
            positive_int(cfg, key)
    for key in ("trainer.epochs", "trainer.batch_size", "search.n_trials", "search.jobs"):
        positive_int(cfg, key)
    if "learning_rate" in cfg.optimizer:
        positive_number(cfg, "optimizer.learning_rate")
    check_plain_keys(cfg)


def check_space_values(cfg: DictConfig, space: dict[str, Any]) -> None:
    """Refuse a space that can sample a value its key refuses (depth 1.5, a NaN rate), up front."""
    for key, dist in space.items():
        if isinstance(OmegaConf.select(cfg, key), DictConfig):
            continue  # a config-group choice (optimizer: choice(sgd, adam)): its options are files
        corners = getattr(dist, "choices", None) or (dist.low, dist.high)
        for value in corners:
            trial = OmegaConf.create(OmegaConf.to_container(cfg))
            OmegaConf.update(trial, key, value, force_add=True)
            try:
                check_values(trial)
            except ConfigError as exc:
                raise ConfigError(f"search.space.{key} can sample {value!r}: {exc}") from exc


# Keys only used later (by TensorFlow, the study loop, MLflow), where a bad value would fail
# mid-sweep: checked here with the rest. Each: what it must be, and the test of it.
FLAGS = (
    "trainer.deterministic",
    "trainer.jit_compile",
    "tracking.enabled",
    "tracking.log_model",
    "tracking.log_plots",
    "search.enqueue_baseline",
)

NAMES = ("data.name", "search.study_name", "tracking.experiment")


def check_plain_keys(cfg: DictConfig) -> None:
    """Flags, names, seeds and the study loop's numbers: refused now, not mid-sweep (fuzzed)."""
    for key in FLAGS:
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
    for key in NAMES:
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key} must be a non-empty name, got {value!r}")
    for key in ("seed", "data.seed"):
        value = OmegaConf.select(cfg, key)
        if value is not None and (not _is_int(value) or not 0 <= value < 2**32):
            raise ConfigError(f"{key} must be an integer from 0 to 2**32-1, got {value!r}")
    for key in ("search.heartbeat_interval", "search.grace_period"):
        positive_int(cfg, key)
    failures = OmegaConf.select(cfg, "search.max_failed_trials")
    if not _is_int(failures) or failures < 0:
        raise ConfigError(
            f"search.max_failed_trials must be 0 (no limit) or more, got {failures!r}"
        )
    if OmegaConf.select(cfg, "trainer.threads") is not None:
        positive_int(cfg, "trainer.threads")
    precision = OmegaConf.select(cfg, "trainer.precision", default="float32")
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not one of: {', '.join(PRECISIONS)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_search_plan(cfg: DictConfig) -> None:
    """Budgets, warm start and champion keys: refused here rather than after a first trial."""
    if OmegaConf.select(cfg, "search.timeout") is not None:
        positive_number(cfg, "search.timeout")
    if OmegaConf.select(cfg, "search.patience") is not None:
        positive_int(cfg, "search.patience")
    from sweep.config.space import objectives

    objectives(cfg)
    champion = OmegaConf.select(cfg, "search.champion", default="best")
    if champion not in ("best", "robust"):
        raise ConfigError(f"search.champion={champion!r} is not one of: best, robust")
    if champion == "robust":
        positive_int(cfg, "search.robust.top")
        positive_int(cfg, "search.robust.seeds")
        if not cfg.tracking.enabled:
            raise ConfigError(
                "search.champion=robust retrains the top trials from their MLflow records; "
                "it needs tracking (not tracking=none)"
            )


def _spec(cfg: DictConfig, key: str) -> DictConfig:
    """A node the code builds: a mapping with a `_target_` (the allowlist already checked it)."""
    spec = OmegaConf.select(cfg, key)
    if not isinstance(spec, DictConfig) or not isinstance(spec.get("_target_"), str):
        raise ConfigError(f"{key} needs a _target_, e.g. {key}._target_={EXAMPLES[key]}")
    return spec


def check_data(cfg: DictConfig) -> None:
    """The data's task, loss and size, checked by building it once (numpy; no TensorFlow)."""
    task = _choice(cfg, "data.task", tuple(TASK_LOSSES))
    loss = OmegaConf.select(cfg, "trainer.loss")
    if loss is not None and loss not in TASK_LOSSES[task]:
        raise ConfigError(
            f"trainer.loss={loss!r} does not fit a {task} problem; use one of: "
            f"{', '.join(TASK_LOSSES[task])} (or null for {TASK_LOSSES[task][0]})"
        )
    if cfg.data._target_ == "sweep.train.data.sine":  # the tutorial's keys, checked by name
        for key in ("data.n_val", "data.n_test"):
            positive_int(cfg, key)
        train_size(cfg)
    from sweep.train.data import dataset_for

    data = dataset_for(cfg)
    if note := labels_as_regression(data):
        console.say(note)
    n_train = len(data.train.x)
    if cfg.trainer.batch_size > n_train:
        raise ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size} is larger than the training set "
            f"({n_train} points); use at most {n_train}"
        )


FEW_LABELS = 10  # a regression target of at most this many integers is likely class labels


def labels_as_regression(data: Dataset) -> str | None:
    """A warning when a regression target holds only a few integers (a 0/1 column): likely class
    labels trained on as numbers, which quietly gives a val_mse instead of an accuracy."""
    if data.task != "regression" or data.train.y.shape[1] != 1:
        return None
    y = np.concatenate([s.y for s in (data.train, data.val, data.test)]).ravel().astype(float)
    if "y_mean" in data.scaling:  # standardised: back to the file's own values
        y = y * data.scaling["y_std"][0] + data.scaling["y_mean"][0]
    values = np.unique(np.round(y, 3))
    if len(values) > FEW_LABELS or not np.allclose(values, np.round(values), atol=1e-3):
        return None
    shown = ", ".join(str(int(v)) for v in np.round(values))
    return (
        f"warning: the target holds only the integers {shown}, and data.task=regression trains "
        "on them as numbers (val_mse); if they are classes, add data.task=classification"
    )


def train_size(cfg: DictConfig) -> int:
    """Number of grid points numpy's arange will make for the sine data config."""
    d = cfg.data
    for key in ("x_min", "x_max", "step"):
        if not isinstance(d[key], int | float) or isinstance(d[key], bool):
            raise ConfigError(f"data.{key} must be a number, got {d[key]!r}")
    if d.step <= 0 or d.x_max <= d.x_min:
        raise ConfigError("data needs x_min < x_max and step > 0")
    n = int(-(-(d.x_max - d.x_min) // d.step))
    if n > MAX_POINTS or max(d.get("n_val", 0), d.get("n_test", 0)) > MAX_POINTS:
        raise ConfigError(f"data asks for more than {MAX_POINTS:,} points (data.step={d.step})")
    return n


def positive_int(cfg: DictConfig, key: str) -> int:
    """Fetch an integer key that must be >= 1."""
    return positive(cfg, key, integer=True)


def positive_number(cfg: DictConfig, key: str) -> float:
    """Fetch a numeric key that must be > 0 and finite."""
    return float(positive(cfg, key))


def positive(cfg: DictConfig, key: str, integer: bool = False) -> int | float:
    """A key's value that must be a finite number above 0 (with `integer`, a whole one)."""
    value = OmegaConf.select(cfg, key)
    number = isinstance(value, int if integer else int | float) and not isinstance(value, bool)
    if not (number and 0 < value < float("inf")):
        what = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{key} must be {what}, got {value!r}")
    return value


def safe_name(key: str, value: Any, optional: bool = False) -> None:
    """A study or model name names a file (the report) and sits in MLflow filters: no quotes,
    no slashes, no `..`, nothing a terminal would interpret."""
    if optional and value is None:
        return
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        raise ConfigError(
            f"{key}={value!r} must be letters, digits, '.', '_' or '-' (at most 100), "
            "starting with a letter or digit"
        )


def _choice(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> str:
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(allowed)}")
    return value


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, str]:
    """Dotted key -> string value, the shape MLflow params want; URLs come out masked."""
    return {key: mask_text(value) for key, value in leaves(cfg, prefix).items()}
