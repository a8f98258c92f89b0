"""`_target_` names a class or function defined in an allowed module, never one it imports.

The attack these guard: a forged `config.yaml` naming `sweep.train.data.np.save` (or anything
else an allowed module imports) passed a prefix allowlist, and `rerun`'s `validate` called it. Every
case here either checks a name no allowed module defines, or shows what it would have run.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent
from types import ModuleType
from typing import Any

import pytest
from omegaconf import OmegaConf

from sweep.config.checks import prepare
from sweep.core.errors import ConfigError
from sweep.core.objects import ALLOWED, KINDS, build, check_target, resolve, targets
from tests.conftest import CONF
from tests.security.test_security import forged_record, today  # noqa: F401 - fixtures

EXPERIMENTAL = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
SHARED = "postgresql://bob@127.0.0.1:1/optuna"  # nothing listens there: never reached


def verdicts(prefix: str, module: ModuleType, trusted: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every public attribute of module named under prefix -> the object, if the allowlist
    builds it; None if refused."""
    out = {}
    for name in dir(module):
        if name.startswith("_"):
            continue
        try:
            out[name] = resolve(f"{name}._target_", f"{prefix}{name}", trusted)
        except ConfigError:
            out[name] = None
    return out


def defined_in(obj: object, module: ModuleType) -> bool:
    """obj's source is module's own file and its module finds it under its own name."""
    return (
        obj.__module__ == module.__name__
        and inspect.getsourcefile(obj) == module.__file__
        and getattr(module, obj.__name__, None) is obj
    )


# --------------------------------------------------------------------------- what is reachable


@pytest.mark.parametrize("prefix", ALLOWED)
def test_every_name_the_allowlist_reaches_is_defined_where_it_claims(prefix):
    module = importlib.import_module(prefix.rstrip("."))
    built = {name: obj for name, obj in verdicts(prefix, module).items() if obj is not None}
    if prefix in KINDS:  # public API re-exporting private modules: a class of the package's kind
        base_module, _, base_name = KINDS[prefix].rpartition(".")
        base = getattr(importlib.import_module(base_module), base_name)
        home = importlib.import_module(prefix.split(".")[0])
        classes = {n: getattr(module, n) for n in dir(module) if not n.startswith("_")}
        assert set(built) == {
            n for n, o in classes.items() if inspect.isclass(o) and issubclass(o, base)
        }
        for obj in built.values():
            assert Path(inspect.getfile(obj)).is_relative_to(Path(home.__file__).parent)
            assert defined_in(obj, sys.modules[obj.__module__])
    else:  # ours: exactly what the module defines under its own name
        own = {
            n
            for n, o in vars(module).items()
            if not n.startswith("_")
            and (inspect.isclass(o) or inspect.isfunction(o))
            and o.__name__ == n  # not an alias (`make_dataset = sine`)
            and defined_in(o, module)
        }
        assert set(built) == own
    assert not any(isinstance(obj, ModuleType) for obj in built.values())
    assert {"SGD", "TPESampler", "MedianPruner", "build_mlp", "sine"} & set(built)


@pytest.mark.parametrize("prefix", ALLOWED)
def test_no_name_walks_on_through_a_module_an_allowed_module_holds(prefix):
    module = importlib.import_module(prefix.rstrip("."))
    held = {n: m for n in dir(module) if isinstance(m := getattr(module, n), ModuleType)}
    assert held  # np, keras, schedules, nsgaii, ...: each a way out under a prefix rule
    for name, inner in held.items():
        for attr in (a for a in dir(inner) if not a.startswith("_")):
            with pytest.raises(ConfigError, match="is not allowed"):
                check_target("x._target_", f"{prefix}{name}.{attr}")


@pytest.fixture
def mylab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user's trusted package: its own builders beside names it only imports."""
    package = tmp_path / "lab" / "mylab_targets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        dedent(
            """
            import functools
            from shutil import copyfile

            import numpy as np

            from mylab_targets import tools
            from mylab_targets.tools import touch as reexported

            CONFIG = {"units": 1}
            copy_later = functools.partial(copyfile)


            def build(units=1):
                return {"units": units}


            @functools.cache
            def cached():
                return 1


            class Thing:
                @classmethod
                def make(cls):
                    return cls()
            """
        )
    )
    (package / "tools.py").write_text("def touch(path):\n    open(path, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lab"))
    yield tmp_path
    for name in [n for n in sys.modules if n.split(".")[0] == "mylab_targets"]:
        del sys.modules[name]


def test_a_trusted_module_offers_what_it_defines_and_nothing_it_imports(mylab):
    trusted = ("mylab_targets.",)
    found = {}
    for name in ("mylab_targets", "mylab_targets.tools"):
        module = importlib.import_module(name)
        found |= {f"{name}.{n}": o for n, o in verdicts(f"{name}.", module, trusted).items()}
    assert {t for t, obj in found.items() if obj is not None} == {
        "mylab_targets.build",
        "mylab_targets.cached",  # a decorated function is still its module's own
        "mylab_targets.Thing",
        "mylab_targets.tools.touch",
    }
    for target in ("mylab_targets.np.save", "mylab_targets.Thing.make", "mylab_targets.os.system"):
        with pytest.raises(ConfigError):
            resolve("model._target_", target, trusted)


# --------------------------------------------------------------------------- forged configs

FORGED = [
    (
        ["data._target_=sweep.train.data.np.save"],
        "data._target_='sweep.train.data.np.save' is not allowed",
    ),
    (
        ["model._target_=sweep.train.model.keras.saving.load_model"],
        "model._target_='sweep.train.model.keras.saving.load_model' is not allowed",
    ),
    (
        ["search.sampler._target_=sweep.train.data.np.load"],
        "search.sampler._target_='sweep.train.data.np.load' is not allowed",
    ),
    (
        ["model._target_=sweep.train.model.keras"],
        "model._target_='sweep.train.model.keras' is not allowed",
    ),
    (
        ["data._target_=sweep.train.data.Path"],
        "data._target_='sweep.train.data.Path' is not allowed",
    ),
    (
        ["optimizer._target_=keras.optimizers.schedules.ExponentialDecay"],
        "optimizer._target_='keras.optimizers.schedules.ExponentialDecay' is not allowed",
    ),
    (
        ["optimizer._target_=keras.optimizers.deserialize"],
        "optimizer._target_='keras.optimizers.deserialize' is not allowed",
    ),
    (
        ["search.sampler._target_=optuna.samplers.nsgaii"],
        "search.sampler._target_='optuna.samplers.nsgaii' is not allowed",
    ),
    (  # shaped like a class, resolved in validate's build: a bool, not a pruner
        ["search.pruner._target_=optuna.pruners.TYPE_CHECKING"],
        "search.pruner._target_='optuna.pruners.TYPE_CHECKING' is not allowed: not a class",
    ),
    (
        ["+search.pruner._args_=[{_target_: sweep.train.data.np.save}]"],
        "search.pruner._args_[0]._target_='sweep.train.data.np.save' is not allowed",
    ),
    (
        [
            "+search.pruner._recursive_=false",
            "+search.pruner.wrapped={_target_: sweep.train.data.np.save}",
        ],
        "search.pruner.wrapped._target_='sweep.train.data.np.save' is not allowed",
    ),
    (["+search.sampler._partial_=yes"], "search.sampler._partial_ must be true or false"),
    (["+search.sampler._recursive_=1"], "search.sampler._recursive_ must be true or false"),
    (
        ["+search.sampler._convert_=everything"],
        "search.sampler._convert_ must be one of none, partial, object, all",
    ),
    (["+search.sampler._args_=x"], "search.sampler._args_ must be a list"),
]


@pytest.mark.parametrize(("overrides", "said"), FORGED, ids=[f[1][:40] for f in FORGED])
def test_a_name_that_reaches_past_the_allowlist_is_refused_in_one_line(
    compose_cfg, overrides, said
):
    with pytest.raises(ConfigError) as info:
        prepare(compose_cfg(*overrides))
    assert str(info.value).startswith(said) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "flags", [{"_partial_": True}, {"_convert_": "all"}, {"_convert_": "ALL", "_args_": []}]
)
def test_hydras_own_keys_still_work_within_the_allowlist(flags):
    import optuna

    spec = OmegaConf.create({"_target_": "optuna.pruners.MedianPruner", **flags})
    made = build(spec, "search.pruner")
    pruner = made() if flags.get("_partial_") else made
    assert type(pruner) is optuna.pruners.MedianPruner


def hostile(marker: Path) -> list[tuple[dict, tuple[str, ...], str]]:
    """(spec, trusted, refusal) whose call would write marker (or marker.npy)."""
    save = {"_target_": "sweep.train.data.np.save", "_args_": [str(marker), [1]]}
    hidden = f"'{{_target_: sweep.train.data.np.save, _args_: [{marker}, [1]]}}'"
    trusted = ("mylab_targets.",)
    return [
        (save, (), "x._target_='sweep.train.data.np.save' is not allowed"),
        (  # passes the name check (trusted, dotted): held by resolution
            {"_target_": "mylab_targets.np.save", "_args_": [str(marker), [1]]},
            trusted,
            "x: cannot import mylab_targets.np.save",
        ),
        (
            {"_target_": "mylab_targets.copyfile", "_args_": [__file__, str(marker)]},
            trusted,
            "it is defined in shutil; mylab_targets only imports it",
        ),
        (
            {"_target_": "mylab_targets.reexported", "_args_": [str(marker)]},
            trusted,
            "it is defined in mylab_targets.tools; mylab_targets only imports it",
        ),
        (
            {"_target_": "mylab_targets.copy_later", "_args_": [__file__, str(marker)]},
            trusted,
            "it is a partial, not a class or function of mylab_targets",
        ),
        (  # nested in the positional arguments of an allowed class
            {"_target_": "optuna.pruners.PatientPruner", "_args_": [save, 1]},
            (),
            "x._args_[0]._target_='sweep.train.data.np.save' is not allowed",
        ),
        (  # an interpolation (as a resolved config re-read holds one): built only once resolved
            {
                "_target_": "optuna.pruners.PatientPruner",
                "patience": 1,
                "wrapped_pruner": "${oc.create:" + hidden + "}",
            },
            (),
            "x.wrapped_pruner._target_='sweep.train.data.np.save' is not allowed",
        ),
        (  # escaped: resolving leaves `${`, which Hydra would resolve after the check
            {
                "_target_": "optuna.pruners.PatientPruner",
                "patience": 1,
                "wrapped_pruner": "\\${oc.create:" + hidden + "}",
            },
            (),
            "x.wrapped_pruner holds `${` after resolution",
        ),
    ]


@EXPERIMENTAL
@pytest.mark.parametrize("case", range(8))
def test_build_resolves_every_target_before_calling_anything(mylab, case):
    marker = mylab / "written"
    spec, trusted, said = hostile(marker)[case]
    try:
        with pytest.raises(ConfigError) as info:
            build(OmegaConf.create(spec), "x", trusted)
    finally:
        assert not list(mylab.glob("written*")), "the hostile target ran"
    assert said in str(info.value) and "\n" not in str(info.value)


def test_a_trusted_modules_own_function_is_built(mylab):
    """The control for the refusals above: the same harness sees a call that happens."""
    marker = mylab / "written"
    spec = {"_target_": "mylab_targets.tools.touch", "_args_": [str(marker)]}
    build(OmegaConf.create(spec), "x", ("mylab_targets.",))
    assert marker.exists()


# --------------------------------------------------------------------------- shared storage

NESTED_CMAES = [
    (
        "+search.sampler={_target_: optuna.samplers.PartialFixedSampler, fixed_params: {},"
        " base_sampler: {_target_: optuna.samplers.CmaEsSampler, seed: 0}}",
        "search.sampler.base_sampler=cmaes unpickles",
    ),
    (
        "+search.sampler={_target_: optuna.samplers.QMCSampler, seed: 0,"
        " independent_sampler: {_target_: optuna.samplers.CmaEsSampler}}",
        "search.sampler.independent_sampler=cmaes unpickles",
    ),
    (
        "+search.sampler={_target_: optuna.samplers.PartialFixedSampler,"
        " _args_: [{}, {_target_: optuna.samplers.CmaEsSampler}]}",
        "search.sampler._args_[1]=cmaes unpickles",
    ),
]


@EXPERIMENTAL
@pytest.mark.parametrize(("spec", "said"), NESTED_CMAES, ids=["base", "independent", "args"])
def test_a_nested_cmaes_on_a_shared_storage_is_refused_before_connecting(compose_cfg, spec, said):
    from sweep.study.study import open_sweep

    cfg = prepare(compose_cfg("~search.sampler", spec))
    cfg.search.storage = SHARED
    with pytest.raises(ConfigError, match=re.escape(said)):
        open_sweep(cfg)


def test_samplers_that_keep_no_pickles_pass_on_a_shared_storage(compose_cfg):
    from sweep.study.study import check_sampler_on_shared_storage

    for option in ("tpe", "random", "qmc", "nsgaii"):
        cfg = prepare(compose_cfg(f"search/sampler={option}"))
        cfg.search.storage = SHARED
        check_sampler_on_shared_storage(cfg)


# --------------------------------------------------------------------------- shipped configs


def options() -> list[str]:
    """Every option of every config group in conf/, as `group=option`."""
    found = []
    for yaml in sorted(CONF.rglob("*.yaml")):
        group = yaml.parent.relative_to(CONF).as_posix()
        # a model's space and study name are composed by its model group (model=cnn brings
        # them), never alone
        if group not in (".", "search/space/model", "search/name"):
            found.append(f"{group}={yaml.stem}")
    return found


@EXPERIMENTAL
@pytest.mark.parametrize("option", options())
def test_every_shipped_option_validates_and_resolves(compose_cfg, option, tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_STORAGE", SHARED)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    extra = []
    if option == "data=csv":
        (tmp_path / "t.csv").write_text("a,y\n" + "".join(f"{i},{2 * i}\n" for i in range(200)))
        extra = [f"data.path={tmp_path / 't.csv'}", "data.targets=[y]"]
    if option == "data=npy":
        import numpy as np

        np.save(tmp_path / "x.npy", np.zeros((200, 3), np.float32))
        np.save(tmp_path / "y.npy", np.zeros((200, 1), np.float32))
        extra = [f"data.x={tmp_path / 'x.npy'}", f"data.y={tmp_path / 'y.npy'}"]
    if option == "search/sampler=gp" and importlib.util.find_spec("torch") is None:
        pytest.skip("GPSampler needs torch: pip install 'sweep[gp]'")
    cfg = prepare(compose_cfg(option, *extra))
    for key, target in targets(cfg):
        resolve(key, target)
    if option == "search=shared":
        from sweep.study.study import check_sampler_on_shared_storage

        check_sampler_on_shared_storage(cfg)


# --------------------------------------------------------------------------- forged records


def replaced(config: dict, dotted: str, value: object) -> dict:
    """config with the value at dotted replaced whole (a forger writes what they like)."""
    out = copy.deepcopy(config)
    *path, last = dotted.split(".")
    node = out
    for part in path:
        node = node[part]
    node[last] = value
    return out


@pytest.mark.parametrize(
    ("dotted", "value", "said"),
    [
        (
            "data._target_",
            "sweep.train.data.np.save",
            "data._target_='sweep.train.data.np.save' is not",
        ),
        (
            "search.sampler",
            {
                "_target_": "sweep.train.data.np.load",
                "_args_": ["/tmp/x.npy"],
                "allow_pickle": True,
            },
            "search.sampler._target_='sweep.train.data.np.load' is not allowed",
        ),
        (
            "model._target_",
            "sweep.train.model.keras.saving.load_model",
            "model._target_='sweep.train.model.keras.saving.load_model' is not allowed",
        ),
        (
            "search.pruner",
            {
                "_target_": "optuna.pruners.PatientPruner",
                "_args_": [{"_target_": "sweep.train.data.np"}],
            },
            "search.pruner._args_[0]._target_='sweep.train.data.np' is not allowed",
        ),
        (  # passes the name check; refused by resolution in validate, before any run
            "search.pruner",
            {"_target_": "optuna.pruners.TYPE_CHECKING"},
            "search.pruner._target_='optuna.pruners.TYPE_CHECKING' is not allowed",
        ),
    ],
)
def test_a_forged_record_naming_an_imported_name_is_refused_before_training(
    tracker,  # noqa: F811 - the fixture of tests/security/test_security.py
    today,  # noqa: F811
    dotted,
    value,
    said,
    capsys,
):
    from sweep.cli.runner import main

    run_id = forged_record(tracker, replaced(today, dotted, value))
    before = len(tracker.client.search_runs([tracker.experiment_id]))
    folder = str(Path(tracker.artifact_root).parent)
    assert main(["rerun", run_id, "--store", folder]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and said in err, err
    assert len(tracker.client.search_runs([tracker.experiment_id])) == before
