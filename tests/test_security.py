"""Issue 14: a shared tracking server is a trust boundary (docs/security.md).

Each test plays the attacker who can write to the shared stores, or the user's slip that would
leak a secret into them: nothing read from a store runs, nothing secret reaches one.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from sweep.config import mask_data, mask_text, mask_url
from sweep.errors import ConfigError

# Passwords that broke the old masker: a colon, a quote, a slash, an @, and one in the query.
SECRETS = ("s3:cr3t", "it's-s3cret", "sl/ash", "at@s3cret")
URLS = [f"postgresql://bob:{p}@db.lab:5432/optuna" for p in SECRETS] + [
    "postgresql://bob@db.lab/optuna?password=qu3ry-s3cret&sslmode=require",
    "postgresql://bob@db.lab/optuna?sslmode=require&sslpassword=qu3ry-s3cret",
]


def leaked(text: str) -> list[str]:
    """Every secret (or a telling fragment of one) that text still shows."""
    return [s for s in (*SECRETS, "qu3ry", "s3cret", "s3cr3t") if s in text]


@pytest.mark.parametrize("url", URLS)
def test_every_way_a_url_is_written_down_comes_out_masked(url):
    command = shlex.join(["python", "-m", "sweep", "worker", f"search.storage={url}"])
    forms = {
        "raw": url,
        "repr in an error": f"search.storage={url!r} names no host",
        "shell command": command,
        "yaml": yaml.safe_dump({"search": {"storage": url}}),
        "json of the command": json.dumps({"command": command}, indent=2),
    }
    for name, text in forms.items():
        masked = mask_text(text)
        assert not leaked(masked), (name, masked)
        assert "db.lab" in masked, (name, masked)
        assert mask_text(masked) == masked  # idempotent: a record masked twice is unchanged
    assert yaml.safe_load(mask_text(forms["yaml"]))["search"]["storage"] == mask_url(url)
    assert json.loads(mask_text(forms["json of the command"]))["command"].startswith("python")


def test_masking_keeps_what_is_not_secret():
    assert mask_url("http://mlflow.lab:5000/#/x?y=1") == "http://mlflow.lab:5000/#/x?y=1"
    assert mask_url("postgresql://bob@db/optuna") == "postgresql://bob@db/optuna"
    assert mask_url("postgresql://bob:p:w@db/o") == "postgresql://bob:***@db/o"
    assert mask_data({"a": [URLS[1], 3]}) == {"a": [mask_url(URLS[1]), 3]}


def test_a_password_with_a_slash_is_refused_without_printing_it(tmp_path):
    from sweep.config import STORAGE_SCHEMES, check_url

    with pytest.raises(ConfigError, match="percent-encode") as err:
        check_url("search.storage", "postgresql://bob:a/b?c#d@db/optuna", STORAGE_SCHEMES)
    assert "a/b" not in str(err.value) and "c#d" not in str(err.value)


# --------------------------------------------------------------------------- models from a store


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory):
    """One SQLite store for the module (its schema migration takes seconds)."""
    from sweep.tracking import Tracker

    folder = tmp_path_factory.mktemp("store")
    tracker = Tracker(f"sqlite:///{folder}/mlflow.db", "sine", str(folder / "artifacts"))
    tracker.setup()
    return tracker


@pytest.fixture
def logged_model(tracker):
    """A run with a small Keras model logged: (uri, run id, its MLmodel file on disk)."""
    import keras
    import numpy as np

    from sweep.tracking import logged_model_id

    run = tracker.start_run("victim")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    run.log_model(model, np.zeros((2, 1), np.float32), [])
    run.end()
    model_id = logged_model_id(tracker.client, run.run_id)
    mlmodel = Path(tracker.artifact_root, "models", model_id, "artifacts", "MLmodel")
    return tracker.uri, run.run_id, mlmodel


def test_a_logged_keras_model_loads_in_safe_mode(logged_model):
    from sweep.tracking import load_run_model

    uri, run_id, _ = logged_model
    assert load_run_model(uri, run_id).count_params() == 2


def test_a_tampered_mlmodel_asking_for_a_savedmodel_is_refused(logged_model):
    from sweep.tracking import load_run_model

    uri, run_id, mlmodel = logged_model
    meta = yaml.safe_load(mlmodel.read_text())
    meta["flavors"]["keras"]["save_exported_model"] = True
    mlmodel.write_text(yaml.safe_dump(meta))
    with pytest.raises(ConfigError, match="refused, it is an exported SavedModel"):
        load_run_model(uri, run_id)


def test_a_tampered_mlmodel_pointing_outside_its_folder_is_refused(logged_model):
    from sweep.tracking import load_run_model

    uri, run_id, mlmodel = logged_model
    meta = yaml.safe_load(mlmodel.read_text())
    meta["flavors"]["keras"]["data"] = "../../../../../../../etc"
    mlmodel.write_text(yaml.safe_dump(meta))
    with pytest.raises(ConfigError, match="names no .keras file inside it"):
        load_run_model(uri, run_id)


def test_a_keras_file_with_a_lambda_is_refused_by_safe_mode(logged_model):
    import keras

    from sweep.tracking import load_run_model

    uri, run_id, mlmodel = logged_model
    evil = keras.Sequential([keras.Input((1,)), keras.layers.Lambda(lambda x: x * 2)])
    evil.save(mlmodel.parent / "data" / "model.keras")  # the attacker overwrites the file
    with pytest.raises(ValueError, match="safe_mode"):
        load_run_model(uri, run_id)
