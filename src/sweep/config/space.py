"""The search space (Hydra's sweep grammar) mapped to Optuna distributions; the study fingerprint.

Pure mapping: no TensorFlow, no MLflow, no study loop (that is study.py); the sampler and pruner
are built from their `_target_` by objects.py.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweep.config.records import earlier_name
from sweep.core.errors import ConfigError, first_line
from sweep.core.keys import leaves

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
    "search.timeout",
    "search.patience",
    "search.warm_start_from",
    "search.champion",
    "search.robust",
)
WHEN = "when"  # search.space.when.<key>.<option>: the sub-space that option opens
# Final metrics every run measures besides the task's own (pipeline.log_result): objectives too.
RUN_METRICS = ("n_params", "predict_ms", "train_seconds")


class Space(dict):
    """The distributions every trial samples (a dict, key -> distribution), and the branches.

    `branches[key][option]` is the sub-space sampled only when `key` takes `option`; its keys
    are absent from trials that took another option.
    """

    def __init__(
        self,
        dists: dict[str, BaseDistribution] | None = None,
        branches: dict[str, dict[Any, Space]] | None = None,
    ) -> None:
        super().__init__(dists or {})
        self.branches = branches or {}

    def flat(self) -> dict[str, BaseDistribution]:
        """Every distribution any trial may sample, branches included."""
        out = dict(self)
        for options in self.branches.values():
            for sub in options.values():
                out.update(sub.flat())
        return out


def parse_space(space: DictConfig | dict | None, cfg: DictConfig | None = None) -> Space:
    """Map `{model: {depth: "int(interval(1, 6))"}}` (or dotted keys) to Optuna distributions.

    Keys are the config keys each expression sets; each must exist in cfg. A `when` node holds
    sub-spaces: `when.<key>.<option>` is sampled only in trials where `<key>` took `<option>`.
    """
    if not space:
        return Space()
    data = OmegaConf.to_container(space, resolve=True) if isinstance(space, DictConfig) else space
    data = dict(data)
    when = data.pop(WHEN, None) or {}
    parser = OverridesParser.create()
    dists: dict[str, BaseDistribution] = {}
    for key, expr in leaves(data).items():
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
    return Space(dists, _branches(when, dists, cfg))


def _branches(
    when: dict, dists: dict[str, BaseDistribution], cfg: DictConfig | None
) -> dict[str, dict[Any, Space]]:
    """`when.<key>.<option>: sub-space` -> {key: {option: Space}}, each checked in its option."""
    out: dict[str, dict[Any, Space]] = {}
    for key, options in _option_nodes(when, dists).items():
        dist = dists.get(key)
        if not isinstance(dist, CategoricalDistribution):
            raise ConfigError(
                f"search.space.when.{key}: {key!r} is not a choice(...) of this space"
            )
        out[key] = {}
        for option, sub in options.items():
            if option not in dist.choices:
                raise ConfigError(
                    f"search.space.when.{key}.{option}: {option!r} is not one of "
                    f"{', '.join(map(str, dist.choices))}"
                )
            branch_cfg = apply_params(cfg, {key: option}) if cfg is not None else None
            out[key][option] = parse_space(sub, branch_cfg)
            clash = out[key][option].flat().keys() & dists.keys()
            if clash:
                raise ConfigError(
                    f"search.space.when.{key}.{option}: {sorted(clash)[0]!r} is already swept "
                    "by the main space"
                )
    return out


def _option_nodes(when: dict, dists: dict, prefix: str = "") -> dict[str, dict]:
    """Split `when` into {dotted key: {option: sub-space}}: the path ends at a swept key."""
    out: dict[str, dict] = {}
    for name, node in when.items():
        key = f"{prefix}{name}"
        if not isinstance(node, dict):
            raise ConfigError(f"search.space.when.{key}: names no choice(...) of this space")
        if key in dists:
            out[key] = node
        else:
            out.update(_option_nodes(node, dists, f"{key}."))
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
    metrics += RUN_METRICS
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
    """A copy of cfg with each dotted key set to the trial's value.

    A name chosen for a key that holds a config group's node (optimizer: adam) loads that
    option's file from conf/ first; its sub-space values then land on the loaded node.
    """
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key in sorted(params, key=lambda k: k.count(".")):
        value = params[key]
        if isinstance(value, str) and isinstance(OmegaConf.select(out, key), DictConfig):
            value = group_option(key, value)
        OmegaConf.update(out, key, value, merge=False)
    return out


def group_option(key: str, option: str) -> dict[str, Any]:
    """conf/<group>/<option>.yaml as plain data: what `key=option` would compose."""
    from sweep import CONF_DIR

    path = Path(CONF_DIR, *key.split("."), f"{option}.yaml")
    if not path.is_file():
        raise ConfigError(f"search.space.{key}: no option {option!r} (no {path})")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    if "defaults" in data:
        raise ConfigError(f"search.space.{key}: {path} has a defaults list; sweep plain options")
    return data


def sample(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Suggest the space define-by-run: a branch's keys only in trials that took its option."""
    params = {key: suggest(trial, key, dist) for key, dist in space.items()}
    return with_branches(space, params, lambda sub: sample(trial, sub))


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """One suggest_* call for a distribution (the public twin of ask(fixed_distributions))."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def misfit(space: Space, params: dict[str, Any]) -> str | None:
    """Why params are not a point this space samples (missing, extra, outside); None if they are."""
    expected = active(space, params)
    for key in sorted(expected.keys() - params.keys()):
        return f"no value for {key}"
    for key in sorted(params.keys() - expected.keys()):
        return f"{key} is not in the space"
    for key, dist in expected.items():
        if not _inside(dist, params[key]):
            return f"{key}={params[key]!r} is outside the space"
    return None


def active(space: Space, params: dict[str, Any]) -> dict[str, BaseDistribution]:
    """The distributions a trial with these choices samples: the space plus the taken branches."""
    out = dict(space)
    for key, options in space.branches.items():
        sub = options.get(params.get(key))
        if sub is not None:
            out.update(active(sub, params))
    return out


def _inside(dist: BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def baseline_params(cfg: DictConfig, space: Space) -> dict[str, Any]:
    """The config's own values for the swept keys: the tutorial's point in the space."""
    params = {key: _current(cfg, key, dist) for key, dist in space.items()}
    for key, dist in space.items():
        if not _inside(dist, params[key]):
            raise ConfigError(
                f"search.space.{key}: the baseline value {params[key]!r} is outside the space"
            )
    return with_branches(space, params, lambda sub: baseline_params(cfg, sub))


def with_branches(
    space: Space, params: dict[str, Any], values: Callable[[Space], dict[str, Any]]
) -> dict[str, Any]:
    """`params` plus the values of each branch whose option they took (a conditional space)."""
    for key, options in space.branches.items():
        sub = options.get(params[key])
        if sub is not None:
            params.update(values(sub))
    return params


def _current(cfg: DictConfig, key: str, dist: BaseDistribution) -> Any:
    """cfg's value at key; for a group's node, the name of the option whose file it matches."""
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, DictConfig) or not isinstance(dist, CategoricalDistribution):
        return value
    for option in dist.choices:
        if group_option(key, str(option)).get("_target_") == value.get("_target_"):
            return option
    return OmegaConf.to_container(value)


def fingerprint(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """Digest of everything that decides what a trial computes (space, fixed config, sampler)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    for dotted in VOLATILE_KEYS:
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    for key in ("model", "data"):
        if isinstance(data.get(key), dict) and "_target_" in data[key]:
            data[key]["_target_"] = earlier_name(data[key]["_target_"])
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], data
