"""The composed config: the tutorial's defaults, the promised key names, Hydra's conventions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from sweep.config import (
    existing_store,
    flatten,
    mask_url,
    prepare,
    store_location,
)
from sweep.errors import ConfigError
from tests.conftest import sweep_cmd


def test_defaults_reproduce_the_tutorial(compose_cfg):
    cfg = prepare(compose_cfg())
    assert (cfg.data.x_min, cfg.data.x_max, cfg.data.step) == (-5.0, 5.0, 0.001)
    assert (cfg.model.depth, cfg.model.width, cfg.model.activation) == (4, 20, "tanh")
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum) == ("sgd", 0.01, 0.0)
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.loss) == (50, 100, "mse")
    assert cfg.search.n_trials == 30


@pytest.mark.parametrize(
    "key",
    [
        "seed",
        "model.depth",
        "model.width",
        "model.activation",
        "optimizer.lr",
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
    assert (cfg.model.width, cfg.optimizer.name, cfg.trainer.epochs) == (32, "adam", 7)


def test_cfg_job_prints_the_composed_config(tmp_path):
    out = sweep_cmd("sweep", "model.width=33", "--cfg", "job", timeout=120)
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    assert printed["model"]["width"] == 33
    assert printed["search"]["space"]["optimizer"]["lr"] == "tag(log, interval(0.001, 0.3))"


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
