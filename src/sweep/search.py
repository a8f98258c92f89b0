"""The search space (Hydra's sweep grammar) mapped to Optuna distributions; the study fingerprint.

Pure mapping: no TensorFlow, no MLflow, no study loop (that is study.py); the sampler and pruner
are built from their `_target_` by objects.py.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweep.errors import ConfigError, first_line

# Keys whose values never change what a trial computes; a resumed study may change them freely.
VOLATILE_KEYS = (
    "search.n_trials",
    "search.jobs",
    "search.storage",
    "tracking",
    "paths",
    "trainer.threads",
    "search.heartbeat_interval",
    "search.grace_period",
    "search.max_failed_trials",
)


def parse_space(
    space: DictConfig | dict | None, cfg: DictConfig | None = None
) -> dict[str, BaseDistribution]:
    """Map `{model: {depth: "int(interval(1, 6))"}}` (or dotted keys) to Optuna distributions.

    Keys are the config keys each expression sets; each must exist in cfg.
    """
    if not space:
        return {}
    parser = OverridesParser.create()
    dists: dict[str, BaseDistribution] = {}
    for key, expr in _leaves(space).items():
        if cfg is not None and OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
            raise ConfigError(f"search.space: key {key!r} does not exist in the config")
        try:
            override = parser.parse_overrides([f"{key}={expr}"])[0]
        except Exception as exc:
            raise ConfigError(
                f"search.space.{key}: cannot parse {expr!r}: {first_line(exc)}"
            ) from exc
        try:
            dists[key] = to_distribution(override)
        except ConfigError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:  # Optuna's checks of the bounds
            raise ConfigError(f"search.space.{key}: {first_line(exc)}") from exc
    return dists


def _leaves(space: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    data = OmegaConf.to_container(space, resolve=True) if isinstance(space, DictConfig) else space
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_distribution(override: Override) -> BaseDistribution:
    """One parsed sweep override -> the Optuna distribution that samples the same values."""
    key = override.key_or_group
    value = override.value()
    if not override.is_sweep_override():
        raise ConfigError(
            f"search.space.{key}: {override.get_value_element_as_str()!r} is a single value; "
            "use choice(...), interval(...), int(interval(...)) or range(...)"
        )
    if isinstance(value, ChoiceSweep):
        choices = [c for c in override.sweep_iterator(transformer=lambda x: x)]
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        range_size(key, value)
        # Hydra's range(a, b) excludes b; Optuna's int bounds include it.
        if value.step > 0 and all(
            isinstance(v, int) for v in (value.start, value.stop, value.step)
        ):
            return IntDistribution(
                int(value.start), int(value.stop) - int(value.step), step=int(value.step)
            )
        return CategoricalDistribution(list(override.sweep_iterator(transformer=lambda x: x)))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if not all(math.isfinite(v) for v in (value.start, value.end)):
            raise ConfigError(f"search.space.{key}: interval bounds must be finite numbers")
        if value.start >= value.end:
            raise ConfigError(
                f"search.space.{key}: interval needs low < high, got {value.start}, {value.end}"
            )
        if log and value.start <= 0:
            raise ConfigError(f"search.space.{key}: a log interval needs a positive low bound")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ConfigError(
        f"search.space.{key}: unsupported sweep {override.get_value_element_as_str()!r}"
    )


MAX_RANGE = 10_000  # a range is listed value by value; range(0, 1e18, 0.5) would never end


def range_size(key: str, value: RangeSweep) -> int:
    """How many values range(start, stop, step) yields; refused when none, or too many to list."""
    try:
        count = math.ceil((value.stop - value.start) / value.step)
    except (ZeroDivisionError, TypeError, ValueError, OverflowError):
        count = 0
    if not 0 < count <= MAX_RANGE:
        raise ConfigError(
            f"search.space.{key}: range({value.start}, {value.stop}, {value.step}) yields "
            f"{max(count, 0)} values; it needs 1 to {MAX_RANGE}"
        )
    return count


# The study's objective when search.objectives is null, by the data's task.
TASK_OBJECTIVES = {
    "regression": [("val_mse", "minimize")],
    "classification": [("val_accuracy", "maximize")],
}
# Final metrics each task's runs log, per split (`val_` + one of these); huber with loss=huber.
TASK_METRICS = {
    "regression": ("mse", "mae", "huber"),
    "classification": ("accuracy", "crossentropy"),
}
DIRECTIONS = ("minimize", "maximize")


def objectives(cfg: DictConfig) -> list[tuple[str, str]]:
    """The study's objective(s) as (metric name, direction): the ONE place that says which.

    `search.objectives` when set, else by `data.task`; a record without either is the tutorial.
    """
    task = OmegaConf.select(cfg, "data.task", default="regression")
    given = OmegaConf.select(cfg, "search.objectives")
    if not given:
        return list(TASK_OBJECTIVES[task])
    metrics = [f"{s}_{m}" for s in ("val", "train", "test") for m in TASK_METRICS[task]]
    out = []
    for i, item in enumerate(given):
        key = f"search.objectives[{i}]"
        if not isinstance(item, DictConfig | dict) or set(item) != {"name", "direction"}:
            raise ConfigError(f"{key} must be {{name: <metric>, direction: minimize|maximize}}")
        if item["name"] not in metrics:
            raise ConfigError(
                f"{key}.name={item['name']!r} is not a metric of a {task} run; "
                f"one of: {', '.join(metrics)}"
            )
        if item["direction"] not in DIRECTIONS:
            raise ConfigError(f"{key}.direction={item['direction']!r} is not minimize or maximize")
        out.append((item["name"], item["direction"]))
    return out


def apply_params(cfg: DictConfig, params: dict[str, Any]) -> DictConfig:
    """A copy of cfg with each dotted key set to the trial's value."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key, value in params.items():
        OmegaConf.update(out, key, value, merge=False)
    return out


def baseline_params(cfg: DictConfig, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """The config's own values for the swept keys: the tutorial's point in the space."""
    params = {key: OmegaConf.select(cfg, key) for key in space}
    for key, dist in space.items():
        if not dist._contains(dist.to_internal_repr(params[key])):
            raise ConfigError(
                f"search.space.{key}: the baseline value {params[key]!r} is outside the space"
            )
    return params


def fingerprint(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """Digest of everything that decides what a trial computes (space, fixed config, sampler)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    for dotted in VOLATILE_KEYS:
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], data
