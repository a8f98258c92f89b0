"""Objects named in the config (`_target_`), built with Hydra's instantiate behind an allowlist.

A config is data: it may name a Keras optimizer, an Optuna sampler or pruner, one of our
builders or data sets, or something in a module the root key `trusted_modules` lists (a user's
own model builder or data function), and nothing else; the standard library never.
`check_targets` reads the whole config without importing anything,
so a bad target is refused before TensorFlow loads; `build` checks again and instantiates.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig

from sweep.errors import ConfigError, first_line

ALLOWED = (
    "keras.optimizers.",
    "optuna.samplers.",
    "optuna.pruners.",
    "sweep.model.",
    "sweep.data.",
)
# A package the target needs that is not a dependency of ours: (module, extra that installs it).
EXTRAS = {"optuna.samplers.GPSampler": ("torch", "gp")}
# Hydra's text when a target cannot be located (its cause is ImportError, with no key in it).
MISSING = re.compile(
    r"Error loading '(?P<target>[^']+)'.*that '(?P<name>[^']+)' is importable from module "
    r"'(?P<module>[^']+)'",
    re.S,
)
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def targets(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every `_target_` under node, with its dotted config key, lists and nesting included."""
    if isinstance(node, DictConfig | dict):
        items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else node.items()
        for name, value in items:
            dotted = f"{key}.{name}" if key else str(name)
            if name == "_target_":
                yield dotted, value
            else:
                yield from targets(value, dotted)
    elif isinstance(node, ListConfig | list | tuple):
        for i, value in enumerate(node):
            yield from targets(value, f"{key}[{i}]")


def trusted_prefixes(cfg: DictConfig | dict | None) -> tuple[str, ...]:
    """`trusted_modules` as allowlist prefixes; a standard-library module is refused by name."""
    names = (cfg or {}).get("trusted_modules") or []
    if isinstance(names, str) or not isinstance(names, ListConfig | list | tuple):
        raise ConfigError(f"trusted_modules must be a list of module names, got {names!r}")
    for name in names:
        parts = str(name).split(".")
        if not all(NAME.match(p) for p in parts):
            raise ConfigError(f"trusted_modules: {name!r} is not a module name")
        if parts[0] in sys.stdlib_module_names or parts[0] in ("builtins", "sweep"):
            raise ConfigError(f"trusted_modules: {name!r} is part of Python or sweep itself")
    return tuple(f"{n}." for n in names)


def check_target(key: str, target: Any, trusted: tuple[str, ...] = ()) -> str:
    """Refuse a target outside the allowlist, or one that reaches a module through it."""
    allowlist = ALLOWED + trusted
    if isinstance(target, str) and target.startswith(allowlist):
        prefix = next(p for p in allowlist if target.startswith(p))
        parts = target[len(prefix) :].split(".")
        # `keras.optimizers.os.system` would reach os through an attribute of the package.
        if all(NAME.match(p) and p not in sys.stdlib_module_names for p in parts):
            return target
    allowed = ", ".join(p.rstrip(".") for p in allowlist)
    why = f"objects are built only from {allowed} (a module of your own: add it to trusted_modules)"
    raise ConfigError(f"{key}={target!r} is not allowed: {why}")


def check_targets(cfg: DictConfig) -> None:
    """Walk the whole config and refuse the first disallowed `_target_`; imports nothing."""
    trusted = trusted_prefixes(cfg)
    for key, target in targets(cfg):
        check_target(key, target, trusted)


def build(spec: DictConfig, key: str, trusted: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """Instantiate the object spec describes; every failure is one ConfigError naming key."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    for nested, target in targets(spec, key):
        check_target(nested, target, trusted)
        _check_extra(key, target)
    try:
        return instantiate(spec, **kwargs)
    except InstantiationException as exc:
        raise ConfigError(f"{key}: {_reason(exc)}") from exc


def _check_extra(key: str, target: str) -> None:
    """A target whose optional dependency is missing fails here, not at its first use."""
    module, extra = EXTRAS.get(target, (None, None))
    if module and importlib.util.find_spec(module) is None:
        name = target.rsplit(".", 1)[-1]
        raise ConfigError(
            f"{key}: {name} needs {module}, which is not installed; pip install 'sweep[{extra}]'"
        )


def _reason(exc: BaseException) -> str:
    """The user's mistake in Hydra's wrapped error: a bad import, kwarg or value, in one line."""
    cause = exc.__cause__
    if cause is None:
        return first_line(exc)
    missing = MISSING.search(str(cause))
    if missing:
        return f"cannot import {missing['target']}: {missing['module']} has no {missing['name']!r}"
    return first_line(cause).replace(".__init__()", "")
