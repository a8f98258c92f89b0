"""Objects named in the config (`_target_`), built with Hydra's instantiate behind an allowlist.

A config is data: it may name a Keras optimizer, an Optuna sampler or pruner, one of our
builders or data sets, or something in a module the root key `trusted_modules` lists (a user's
own model builder or data function), and nothing else; the standard library never.

The rule: a target is a class or function *defined in* an allowed module, never a name that
module merely imports. A prefix alone does not keep it, because Hydra walks attributes:
`sweep.train.data.np.save`, `sweep.train.model.keras.saving.load_model` and
`keras.optimizers.schedules.X` all start well and reach what the allowed module imported.
Two checks keep it:

- `check_target` reads the name and imports nothing, so `check_targets` refuses before
  TensorFlow loads. After `keras.optimizers.`, `optuna.samplers.` or `optuna.pruners.`: exactly
  one capitalised name (their classes; their modules and functions are lower case). After
  `sweep.train.model.` or `sweep.train.data.`: exactly one name the module's source defines
  with `def` or `class` (read with `ast`, not imported). After a `trusted_modules` prefix:
  dotted names.
- `resolve` imports and looks; `build` runs it on every `_target_` of a spec, nested ones
  included, before Hydra calls anything. The third-party packages re-export classes defined in
  private modules (`keras.optimizers.SGD` is `keras.src.optimizers.sgd.SGD`), so there the object
  must be a class of the package's kind (`KINDS`: a subclass of `keras.optimizers.Optimizer`,
  `optuna.samplers.BaseSampler`, `optuna.pruners.BasePruner`) defined inside the same
  distribution, reached as an attribute of the public package. In sweep's modules and trusted
  ones a target is `<module>.<name>`: `<module>` imported as a module by that name (not an
  attribute holding one), the object a class or function whose `__module__` is `<module>`.
  A module, an instance or a method is never a target.

Hydra's own keys may mean only what Hydra means by them: `_args_` is a list (its items are
walked like any value), `_partial_` and `_recursive_` are booleans, `_convert_` is none, partial,
object or all. `_recursive_: false` is allowed: Hydra then hands nested mappings over unbuilt,
and none of the allowed callables builds from its arguments except through `build`; every
nested `_target_` is checked all the same. `build` checks the spec as Hydra will get it,
interpolations resolved; a `${` left after that (an escaped one) would be resolved by Hydra after
the check, so it is refused.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from sweep.core.errors import ConfigError, first_line

# A third-party package (its public prefix) -> the base class of every object built from it.
KINDS = {
    "keras.optimizers.": "keras.optimizers.Optimizer",
    "optuna.samplers.": "optuna.samplers.BaseSampler",
    "optuna.pruners.": "optuna.pruners.BasePruner",
}
OURS = ("sweep.train.model.", "sweep.train.data.")  # modules of this package, one file each
ALLOWED = (*KINDS, *OURS)
# A package the target needs that is not a dependency of ours: (module, extra that installs it).
EXTRAS = {"optuna.samplers.GPSampler": ("torch", "gp")}
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
CLASS = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
CONVERT = ("none", "partial", "object", "all")  # Hydra's ConvertMode (it compares case-blind)
_ABSENT = object()


def _entries(node: Any, key: str = "") -> Iterator[tuple[str, str | None, Any]]:
    """(dotted key, name, value) of every mapping entry and list item under node (name None);
    a `_target_`'s value is not walked into."""
    if isinstance(node, DictConfig | dict):
        items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else node.items()
        for name, value in items:
            dotted = f"{key}.{name}" if key else str(name)
            yield dotted, str(name), value
            if name != "_target_":
                yield from _entries(value, dotted)
    elif isinstance(node, ListConfig | list | tuple):
        for i, value in enumerate(node):
            yield f"{key}[{i}]", None, value
            yield from _entries(value, f"{key}[{i}]")


def targets(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every `_target_` under node, with its dotted config key, lists and nesting included."""
    return ((dotted, value) for dotted, name, value in _entries(node, key) if name == "_target_")


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
    """Refuse a name outside the allowlist or shaped to reach past it; imports nothing."""
    if isinstance(target, str) and _well_named(target, trusted):
        return target
    allowed = ", ".join(p.rstrip(".") for p in ALLOWED + trusted)
    why = f"objects are built only from {allowed} (a module of your own: add it to trusted_modules)"
    raise ConfigError(f"{key}={target!r} is not allowed: {why}")


def _prefix(target: str, trusted: tuple[str, ...]) -> str | None:
    """The longest allowed prefix of target: the one whose rule it is held to."""
    found = [p for p in ALLOWED + trusted if target.startswith(p)]
    return max(found, key=len) if found else None


def _well_named(target: str, trusted: tuple[str, ...]) -> bool:
    """The shape the module docstring gives each prefix."""
    prefix = _prefix(target, trusted)
    if prefix is None:
        return False
    parts = target[len(prefix) :].split(".")
    if not all(NAME.match(p) and p not in sys.stdlib_module_names for p in parts):
        return False  # `mylab.os.system` would reach os through an attribute of the package
    if prefix in KINDS:
        return len(parts) == 1 and CLASS.match(parts[0]) is not None
    if prefix in OURS:
        return len(parts) == 1 and parts[0] in _defined(prefix)
    return True


@functools.cache
def _defined(prefix: str) -> frozenset[str]:
    """What a module of ours defines with `def` or `class`, read from its source, not imported
    (importing sweep.train.model would load TensorFlow)."""
    path = Path(__file__).parents[1].joinpath(*prefix.strip(".").split(".")[1:]).with_suffix(".py")
    source = path.read_text(encoding="utf-8")
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return frozenset(node.name for node in ast.parse(source).body if isinstance(node, kinds))


def check_flags(node: Any, key: str = "") -> None:
    """Hydra's own keys hold what Hydra means by them, or the spec is refused in one line."""
    for dotted, name, value in _entries(node, key):
        if name in ("_partial_", "_recursive_") and not isinstance(value, bool):
            raise ConfigError(f"{dotted} must be true or false, got {value!r}")
        if name == "_convert_" and not (isinstance(value, str) and value.lower() in CONVERT):
            raise ConfigError(f"{dotted} must be one of {', '.join(CONVERT)}, got {value!r}")
        if name == "_args_" and not isinstance(value, ListConfig | list | tuple):
            raise ConfigError(f"{dotted} must be a list of positional arguments, got {value!r}")


def check_targets(cfg: DictConfig) -> None:
    """Walk the whole config and refuse the first disallowed `_target_` or Hydra flag; imports
    nothing."""
    trusted = trusted_prefixes(cfg)
    for key, target in targets(cfg):
        check_target(key, target, trusted)
    check_flags(cfg)


def resolve(key: str, target: Any, trusted: tuple[str, ...] = ()) -> Any:
    """The class or function target names, imported and held to the rule of the module docstring
    (what Hydra would call, looked at before anything is)."""
    check_target(key, target, trusted)
    owner = key.removesuffix("._target_")
    module_name, name = target.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a trusted module's own error too: one line, not a traceback
        raise ConfigError(f"{owner}: cannot import {target}: {first_line(exc)}") from None
    if not isinstance(module, ModuleType) or module.__name__ != module_name:
        raise ConfigError(f"{key}={target!r} is not allowed: {module_name} is not a module")
    found = getattr(module, name, _ABSENT)
    if found is _ABSENT:
        raise ConfigError(f"{owner}: cannot import {target}: {module_name} has no {name!r}")
    why = _why_not(found, module_name, _prefix(target, trusted))
    if why:
        raise ConfigError(f"{key}={target!r} is not allowed: {why}")
    return found


def _why_not(found: Any, module_name: str, prefix: str | None) -> str | None:
    """Why found is not what a target under prefix may be; None when it is."""
    if prefix in KINDS:
        base_module, _, base_name = KINDS[prefix].rpartition(".")
        base = getattr(importlib.import_module(base_module), base_name)
        if not (inspect.isclass(found) and issubclass(found, base)):
            return f"not a class of {KINDS[prefix]}'s kind"
        home = prefix.split(".")[0]
        if not str(found.__module__).startswith(f"{home}."):
            return f"it is defined in {found.__module__}, outside {home}"
        return None
    inner = found if inspect.isclass(found) else _unwrapped(found)
    if not (inspect.isclass(found) or inspect.isfunction(inner)):
        return f"it is a {type(found).__name__}, not a class or function of {module_name}"
    defined = {getattr(found, "__module__", None), getattr(inner, "__module__", None)}
    if defined != {module_name}:
        return f"it is defined in {found.__module__}; {module_name} only imports it"
    return None


def _unwrapped(found: Any) -> Any:
    """A decorated function's own function (functools.wraps), so `@cache def f` is a function."""
    try:
        return inspect.unwrap(found)
    except ValueError:  # a `__wrapped__` cycle: an object posing as a function
        return found


def build(spec: DictConfig, key: str, trusted: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """Instantiate the object spec describes once every `_target_` in it, nested ones included,
    resolves to what the allowlist allows; every failure is one ConfigError naming key."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    checked = _as_instantiated(spec, key)
    check_flags(checked, key)
    for nested, target in targets(checked, key):
        _check_extra(key, check_target(nested, target, trusted))
        resolve(nested, target, trusted)
    try:
        return instantiate(checked, **kwargs)
    except InstantiationException as exc:
        raise ConfigError(f"{key}: {_reason(exc)}") from exc


def _as_instantiated(spec: Any, key: str) -> DictConfig:
    """spec as Hydra will get it: interpolations resolved, and none left for it to resolve after
    the check (an interpolation may produce a mapping with a `_target_`)."""
    try:
        data = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    except Exception as exc:  # omegaconf's interpolation errors carry the key in their text
        raise ConfigError(f"{key}: cannot resolve: {first_line(exc)}") from None
    for dotted, name, value in _entries(data, key):
        if "${" in str(name) or (isinstance(value, str) and "${" in value):
            raise ConfigError(f"{dotted} holds `${{` after resolution (an escaped interpolation)")
    return OmegaConf.create(data)


def _check_extra(key: str, target: str) -> None:
    """A target whose optional dependency is missing fails here, not at its first use."""
    module, extra = EXTRAS.get(target, (None, None))
    if module and importlib.util.find_spec(module) is None:
        name = target.rsplit(".", 1)[-1]
        raise ConfigError(
            f"{key}: {name} needs {module}, which is not installed; pip install 'sweep[{extra}]'"
        )


def _reason(exc: BaseException) -> str:
    """The user's mistake in Hydra's wrapped error: a bad kwarg or value, in one line."""
    cause = exc.__cause__
    if cause is None:
        return first_line(exc)
    return first_line(cause).replace(".__init__()", "")
