"""Objects named by `_target_` in conf/: every option builds, nothing outside the allowlist does."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import optuna
import pytest
from omegaconf import OmegaConf

from sweep.config.checks import prepare
from sweep.core.errors import ConfigError
from sweep.core.objects import build
from tests.conftest import CONF, ROOT, clean_env

NO_TORCH = importlib.util.find_spec("torch") is None
EXPERIMENTAL = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SAMPLERS = [
    ("tpe", optuna.samplers.TPESampler),
    ("tpe_tiny", optuna.samplers.TPESampler),
    ("random", optuna.samplers.RandomSampler),
    ("cmaes", optuna.samplers.CmaEsSampler),
    ("qmc", optuna.samplers.QMCSampler),
    pytest.param(
        "gp",
        optuna.samplers.GPSampler,
        marks=pytest.mark.skipif(NO_TORCH, reason="GPSampler needs torch: pip install 'sweep[gp]'"),
    ),
    ("nsgaii", optuna.samplers.NSGAIISampler),
]
PRUNERS = [
    ("median", optuna.pruners.MedianPruner),
    ("median_tiny", optuna.pruners.MedianPruner),
    ("percentile", optuna.pruners.PercentilePruner),
    ("hyperband", optuna.pruners.HyperbandPruner),
    ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
    ("wilcoxon", optuna.pruners.WilcoxonPruner),
    ("none", optuna.pruners.NopPruner),
]
ALLOWED = (
    "objects are built only from keras.optimizers, optuna.samplers, optuna.pruners, "
    "sweep.train.model, sweep.train.data (a module of your own: add it to trusted_modules)"
)
REFUSED = [
    (["model._target_=os.system"], "model._target_='os.system' is not allowed"),
    (["optimizer._target_=builtins.eval"], "optimizer._target_='builtins.eval' is not allowed"),
    (
        ["search.sampler._target_=subprocess.Popen"],
        "search.sampler._target_='subprocess.Popen' is not allowed",
    ),
    (
        ["search/pruner=none", "+search.pruner.wrapped_pruner={_target_: os.system}"],
        "search.pruner.wrapped_pruner._target_='os.system' is not allowed",
    ),
    (  # an allowed prefix that reaches a module through the package's attributes
        ["optimizer._target_=keras.optimizers.os.system"],
        "optimizer._target_='keras.optimizers.os.system' is not allowed",
    ),
    (["data._target_=os.system"], "data._target_='os.system' is not allowed"),  # never built
]


@EXPERIMENTAL
@pytest.mark.parametrize(("option", "cls"), SAMPLERS)
def test_every_sampler_option_composes_and_builds(compose_cfg, option, cls):
    cfg = prepare(compose_cfg(f"search/sampler={option}"))
    sampler = build(cfg.search.sampler, "search.sampler")
    assert type(sampler) is cls
    assert cfg.search.sampler.seed == 0  # the one seed a study's proposals replay from


@EXPERIMENTAL
@pytest.mark.parametrize(("option", "cls"), PRUNERS)
def test_every_pruner_option_composes_and_builds(compose_cfg, option, cls):
    cfg = prepare(compose_cfg(f"search/pruner={option}"))
    assert type(build(cfg.search.pruner, "search.pruner")) is cls


def test_defaults_are_todays_tpe_and_median(compose_cfg):
    cfg = prepare(compose_cfg())
    assert OmegaConf.to_container(cfg.search.sampler) == {
        "_target_": "optuna.samplers.TPESampler",
        "seed": 0,
        "n_startup_trials": 10,
    }
    assert OmegaConf.to_container(cfg.search.pruner) == {
        "_target_": "optuna.pruners.MedianPruner",
        "n_startup_trials": 5,
        "n_warmup_steps": 5,
    }


def test_tiny_experiment_combines_with_any_sampler_and_pruner(compose_cfg):
    tiny = prepare(compose_cfg("experiment=tiny"))
    assert (tiny.search.sampler.n_startup_trials, tiny.search.pruner.n_warmup_steps) == (2, 1)
    mixed = prepare(compose_cfg("experiment=tiny", "search/sampler=random", "search/pruner=none"))
    assert OmegaConf.to_container(mixed.search.pruner) == {"_target_": "optuna.pruners.NopPruner"}
    assert mixed.trainer.epochs == 4


@EXPERIMENTAL
@pytest.mark.parametrize(
    "spec",
    [
        "{_target_: optuna.samplers.BruteForceSampler, seed: 1}",
        "{_target_: optuna.samplers.NSGAIIISampler, seed: 1}",
        "{_target_: optuna.samplers.GridSampler, search_space: {model.depth: [1, 2]}}",
    ],
)
def test_a_user_written_sampler_target_works(compose_cfg, spec):
    cfg = prepare(compose_cfg("~search.sampler", f"+search.sampler={spec}"))
    name = OmegaConf.create(spec)["_target_"].rsplit(".", 1)[1]
    assert type(build(cfg.search.sampler, "search.sampler")).__name__ == name


@EXPERIMENTAL
def test_a_nested_pruner_target_is_built_too(compose_cfg):
    cfg = prepare(
        compose_cfg(
            "~search.pruner",
            "+search.pruner={_target_: optuna.pruners.PatientPruner, patience: 2,"
            " wrapped_pruner: {_target_: optuna.pruners.MedianPruner}}",
        )
    )
    pruner = build(cfg.search.pruner, "search.pruner")
    assert isinstance(pruner._wrapped_pruner, optuna.pruners.MedianPruner)


@pytest.mark.parametrize(("overrides", "message"), REFUSED, ids=[r[1][:24] for r in REFUSED])
def test_targets_outside_the_allowlist_are_refused_in_one_line(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as info:
        prepare(compose_cfg(*overrides))
    assert str(info.value) == f"{message}: {ALLOWED}"


def test_refusals_come_before_tensorflow_is_imported(tmp_path):
    """A subprocess, so no earlier test has imported TensorFlow already."""
    cases = json.dumps([overrides for overrides, _ in REFUSED])
    script = f"""
import json, sys
from hydra import compose, initialize_config_dir
from sweep.config.checks import prepare
from sweep.core.errors import ConfigError
out = []
for overrides in json.loads({cases!r}):
    with initialize_config_dir(config_dir={str(CONF)!r}, version_base="1.3"):
        cfg = compose("config", overrides=["paths.store={tmp_path}", *overrides])
    try:
        prepare(cfg)
        out.append("accepted")
    except ConfigError as exc:
        out.append(str(exc))
print(json.dumps({{"errors": out, "tf": "tensorflow" in sys.modules}}))
"""
    env = {**clean_env(), "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["tf"] is False
    assert result["errors"] == [f"{message}: {ALLOWED}" for _, message in REFUSED]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["+search.sampler.foo=1"],
            "search.sampler: TPESampler got an unexpected keyword argument 'foo'",
        ),
        (
            ["search/pruner=none", "+search.pruner.n_warmup_steps=3"],
            "search.pruner: NopPruner() takes no arguments",
        ),
        (
            ["search/pruner=percentile", "search.pruner.percentile=150"],
            "search.pruner: Percentile must be between 0 and 100",
        ),
        (
            ["search.sampler._target_=optuna.samplers.Nope"],
            "search.sampler: cannot import optuna.samplers.Nope: optuna.samplers has no 'Nope'",
        ),
        (
            ["~optimizer._target_"],
            "optimizer needs a _target_, e.g. optimizer._target_=keras.optimizers.SGD",
        ),
        (
            ["optimizer.learning_rate=0"],
            "optimizer.learning_rate must be a positive number, got 0",
        ),
    ],
)
def test_a_bad_spec_is_one_line_naming_its_key(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as info:
        prepare(compose_cfg(*overrides))
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not NO_TORCH, reason="torch is installed, so gp builds")
def test_gp_without_torch_names_the_extra(compose_cfg):
    with pytest.raises(ConfigError) as info:
        prepare(compose_cfg("search/sampler=gp"))
    assert str(info.value) == (
        "search.sampler: GPSampler needs torch, which is not installed; pip install 'sweep[gp]'"
    )


def test_default_config_builds_the_tutorials_model_and_plain_sgd(compose_cfg):
    import keras

    cfg = prepare(compose_cfg())
    model = build(cfg.model, "model", input_dim=1)
    dense = [(layer.units, layer.activation.__name__) for layer in model.layers]
    assert dense == [(20, "tanh")] * 4 + [(1, "linear")]
    assert model.input_shape == (None, 1)
    assert model.count_params() == (1 * 20 + 20) + 3 * (20 * 20 + 20) + (20 + 1)
    optimizer = build(cfg.optimizer, "optimizer")
    assert type(optimizer) is keras.optimizers.SGD
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    assert (optimizer.momentum, optimizer.nesterov) == (0.0, False)
