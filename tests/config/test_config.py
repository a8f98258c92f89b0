"""The composed config: the tutorial's defaults, the promised key names, Hydra's conventions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from sweep.config.checks import flatten, prepare
from sweep.config.records import OLD_PRUNERS, OLD_SAMPLERS, upgrade_record
from sweep.config.stores import existing_store, store_location
from sweep.core.errors import ConfigError
from sweep.core.objects import build
from sweep.core.secrets import mask_url
from sweep.replay.record import rerun_config
from tests.conftest import sweep_cmd


def test_defaults_reproduce_the_tutorial(compose_cfg):
    cfg = prepare(compose_cfg())
    assert (cfg.data.x_min, cfg.data.x_max, cfg.data.step) == (-5.0, 5.0, 0.001)
    assert (cfg.model.depth, cfg.model.width, cfg.model.activation) == (4, 20, "tanh")
    assert dict(cfg.optimizer) == {
        "_target_": "keras.optimizers.SGD",
        "learning_rate": 0.01,
        "momentum": 0.0,
    }
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.loss) == (50, 100, "mse")
    assert cfg.search.n_trials == 30


@pytest.mark.parametrize(
    "key",
    [
        "seed",
        "model.depth",
        "model.width",
        "model.activation",
        "optimizer.learning_rate",
        "trainer.epochs",
        "trainer.batch_size",
        "search.n_trials",
        "search.study_name",
        "search.storage",
        "tracking.uri",
        "tracking.experiment",
    ],
)
def test_documented_keys_exist(compose_cfg, key):
    assert OmegaConf.select(prepare(compose_cfg()), key) is not None


def test_stores_default_under_paths_store(compose_cfg, tmp_path):
    cfg = prepare(compose_cfg())
    assert cfg.tracking.uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert cfg.search.storage == f"sqlite:///{tmp_path}/optuna.db"


def test_mlflow_tracking_uri_env_wins(compose_cfg, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert prepare(compose_cfg()).tracking.uri == "http://127.0.0.1:5999"


def test_any_value_overrides_from_the_command_line(compose_cfg):
    cfg = prepare(compose_cfg("model.width=32", "optimizer=adam", "trainer.epochs=7"))
    assert (cfg.model.width, cfg.trainer.epochs) == (32, 7)
    assert cfg.optimizer._target_ == "keras.optimizers.Adam"


def test_cfg_job_prints_the_composed_config(tmp_path):
    out = sweep_cmd("sweep", "model.width=33", "--cfg", "job", timeout=120)
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    assert printed["model"]["width"] == 33
    space = printed["search"]["space"]
    assert space["optimizer"]["learning_rate"] == "tag(log, interval(0.001, 0.3))"


def test_flatten_masks_passwords():
    flat = flatten({"search": {"storage": "postgresql://bob:s3cret@db:5432/optuna"}, "seed": 0})
    assert flat == {"search.storage": "postgresql://bob:***@db:5432/optuna", "seed": "0"}
    assert mask_url("http://host:5000") == "http://host:5000"


def test_bad_value_is_a_config_error(compose_cfg):
    with pytest.raises(ConfigError, match="model.activation='swishy' is not one of"):
        prepare(compose_cfg("model.activation=swishy"))


def test_plain_commands_find_the_store_flag_then_env_then_mlruns(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert store_location().uri == f"sqlite:///{Path('mlruns').resolve()}/mlflow.db"
    with pytest.raises(ConfigError, match="no MLflow store at"):
        existing_store(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()  # nothing created by looking
    (tmp_path / "mlflow.db").touch()
    assert existing_store(tmp_path).uri == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert existing_store().uri == "http://127.0.0.1:1"  # the env var, as in conf/tracking
    assert existing_store(tmp_path).uri.startswith("sqlite:")  # an explicit folder wins
    assert existing_store(tmp_path, "https://example.org").uri == "https://example.org"


def old_record(cfg: DictConfig, **optimizer: object) -> DictConfig:
    """cfg as a run logged before `_target_` recorded it: names, `lr`, a model without target."""
    data = OmegaConf.to_container(cfg)
    data["optimizer"] = optimizer or {"name": "sgd", "lr": 0.01, "momentum": 0.0}
    del data["model"]["_target_"]
    data["search"]["sampler"] = {"name": "tpe", "seed": 0, "n_startup_trials": 10}
    data["search"]["pruner"] = {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 5}
    data["search"]["space"]["optimizer"] = {"lr": "tag(log, interval(0.001, 0.3))"}
    return OmegaConf.create(data)


def test_an_old_record_upgrades_to_todays_config(compose_cfg):
    today = prepare(compose_cfg())
    assert upgrade_record(old_record(today)) == today
    assert upgrade_record(today) == today  # today's records pass through unchanged


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            {"name": "adam", "lr": 0.002, "momentum": 0.0},
            {"_target_": "keras.optimizers.Adam", "learning_rate": 0.002},
        ),
        (
            {"name": "rmsprop", "lr": 0.003, "momentum": 0.5},
            {"_target_": "keras.optimizers.RMSprop", "learning_rate": 0.003, "momentum": 0.5},
        ),
    ],
)
def test_an_old_optimizer_keeps_what_its_builder_passed(compose_cfg, old, new):
    upgraded = upgrade_record(old_record(prepare(compose_cfg()), **old))
    assert OmegaConf.to_container(upgraded.optimizer) == new


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [
        ({"name": "adagrad", "lr": 0.1}, "optimizer.name='adagrad' in the record is not one of"),
        ({"name": "sgd"}, "the record's optimizer has a name but no lr"),
        ({"_target_": "os.system"}, "optimizer._target_='os.system' is not allowed"),
    ],
)
def test_a_record_that_cannot_be_upgraded_is_one_line(compose_cfg, optimizer, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        upgrade_record(old_record(prepare(compose_cfg()), **optimizer))


def test_rerun_config_upgrades_an_old_record(compose_cfg, tmp_path):
    cfg = rerun_config(old_record(prepare(compose_cfg())), store_location(tmp_path / "new"))
    assert (cfg.optimizer._target_, cfg.optimizer.learning_rate) == ("keras.optimizers.SGD", 0.01)
    assert cfg.model._target_ == "sweep.train.model.build_mlp"


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize(
    ("key", "name"),
    [("sampler", n) for n in OLD_SAMPLERS] + [("pruner", n) for n in OLD_PRUNERS],
)
def test_every_old_sampler_and_pruner_name_upgrades_to_one_that_builds(compose_cfg, key, name):
    record = old_record(prepare(compose_cfg()))
    old = {"name": name, "seed": 0, "n_startup_trials": 5, "n_warmup_steps": 5}
    record.search[key] = old | ({"percentile": 25.0} if name == "percentile" else {})
    spec = upgrade_record(record).search[key]
    assert type(build(spec, f"search.{key}")).__name__ == spec._target_.rsplit(".", 1)[1]
