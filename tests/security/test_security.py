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

from sweep.core.errors import ConfigError
from sweep.core.secrets import mask_data, mask_text, mask_url

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
    from sweep.config.stores import STORAGE_SCHEMES, check_url

    with pytest.raises(ConfigError, match="percent-encode") as err:
        check_url("search.storage", "postgresql://bob:a/b?c#d@db/optuna", STORAGE_SCHEMES)
    assert "a/b" not in str(err.value) and "c#d" not in str(err.value)


# --------------------------------------------------------------------------- models from a store


@pytest.fixture
def logged_model(tracker):
    """A run with a small Keras model logged: (uri, run id, its MLmodel file on disk)."""
    import keras
    import mlflow
    import numpy as np

    from sweep.tracking import logged_model_id

    mlflow.set_tracking_uri(tracker.uri)  # Model.log writes through it; conftest resets it
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


# --------------------------------------------------------------------------- records from a store


def forged_record(tracker, config: dict) -> str:
    """A run whose record (config.yaml, replay.json) an attacker wrote; returns its id."""
    run = tracker.start_run("forged")
    run.client.log_text(run.run_id, yaml.safe_dump(config), "config.yaml")
    run.client.log_text(run.run_id, "{}", "replay.json")
    run.end()
    return run.run_id


@pytest.fixture
def today(compose_cfg) -> dict:
    """Today's resolved config, as a run would log it."""
    from omegaconf import OmegaConf

    from sweep.config.checks import prepare

    return OmegaConf.to_container(prepare(compose_cfg("experiment=tiny")))


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        ({"seed": "${oc.env:PGPASSWORD}"}, "holds an interpolation at seed"),
        ({"data": {"step": 1e-12}}, "more than 10,000,000 points"),
        ({"model": {"_target_": "os.system"}}, "model._target_='os.system' is not allowed"),
        ({"trusted_modules": ["evil"]}, "trusts modules this checkout does not (evil)"),
    ],
)
def test_a_forged_record_is_refused_in_one_line_and_runs_nothing(
    tracker, today, edit, said, capsys, monkeypatch
):
    from omegaconf import OmegaConf

    from sweep.cli.runner import main

    monkeypatch.setenv("PGPASSWORD", "env-s3cret")
    record = OmegaConf.to_container(OmegaConf.merge(today, edit))
    run_id = forged_record(tracker, record)
    before = len(tracker.client.search_runs([tracker.experiment_id]))
    folder = str(Path(tracker.artifact_root).parent)
    assert main(["rerun", run_id, "--store", folder]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and said in err, err
    assert "env-s3cret" not in err
    assert len(tracker.client.search_runs([tracker.experiment_id])) == before


# --------------------------------------------------------------------------- names and the UI


@pytest.mark.parametrize("name", ["it's", "../x", "a/b", "..", "x\x1b[2J"])
def test_a_study_name_that_would_break_a_filter_or_a_path_is_refused(compose_cfg, name):
    from sweep.config.checks import prepare

    cfg = compose_cfg()
    cfg.search.study_name = name  # as `search.study_name=...` on the command line
    with pytest.raises(ConfigError, match="must be letters, digits"):
        prepare(cfg)


def test_a_study_named_by_someone_else_cannot_write_the_report_outside_the_store(tmp_path):
    from sweep.serve.report import report_path

    assert report_path(tmp_path, "sine-mlp") == (tmp_path / "reports" / "sine-mlp.html").resolve()
    for name in ("../x", "../../etc/evil", "a/b"):
        with pytest.raises(ConfigError, match="outside"):
            report_path(tmp_path, name)


def test_champion_stays_on_another_studys_better_model():
    from sweep.study.registry import keeps_champion

    ours = {"study": "b", "objective": "val_mse", "best_value": 0.2}
    better = {"study": "a", "objective": "val_mse", "val_mse": "0.1"}
    assert keeps_champion(better, ours, "minimize")
    assert not keeps_champion(better, ours, "maximize")
    assert not keeps_champion({**better, "val_mse": "0.3"}, ours, "minimize")
    assert not keeps_champion({**better, "study": "b"}, ours, "minimize")  # its own study: moves
    assert not keeps_champion(None, ours, "minimize")


def test_ui_tags_only_experiments_that_hold_sweeps_runs(tracker):
    from sweep.serve.ui import KIND_TAG, addresses
    from sweep.tracking import Experiments

    ours = tracker.start_run("ours", tags={"sweep.kind": "single"})
    ours.end()
    foreign = tracker.client.create_experiment("other-project")
    tracker.client.create_run(foreign)
    lines = addresses(Experiments(tracker.uri), "http://127.0.0.1:5000")
    assert any("'sine'" in line for line in lines)
    assert not any("other-project" in line for line in lines)
    assert KIND_TAG not in tracker.client.get_experiment(foreign).tags
    assert KIND_TAG in tracker.client.get_experiment(tracker.experiment_id).tags


# --------------------------------------------------------------------------- shared studies


def test_cmaes_on_a_shared_storage_is_refused_before_connecting(compose_cfg):
    from sweep.config.checks import prepare
    from sweep.study.study import open_sweep

    cfg = prepare(compose_cfg("search/sampler=cmaes"))
    cfg.search.storage = "postgresql://bob@127.0.0.1:1/optuna"  # nothing listens: not reached
    with pytest.raises(ConfigError, match="cmaes unpickles"):
        open_sweep(cfg)


def test_a_sqlite_study_refuses_workers_of_another_host(tmp_path):
    import optuna

    from sweep.study.study import HOST_ATTR, check_one_host

    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url)
    check_one_host(url, study, created=True)
    check_one_host(url, optuna.load_study(study_name="s", storage=url), created=False)
    study.set_user_attr(HOST_ATTR, "node-17")  # the same file, seen from another machine
    with pytest.raises(ConfigError, match="made on 'node-17'"):
        check_one_host(url, optuna.load_study(study_name="s", storage=url), created=False)


# --------------------------------------------------------------------------- the Makefile


def make(tmp_path: Path, *args: str, stdin: str = "") -> str:
    """`make <args>` on a copy of the Makefile in tmp_path, no venv (PY=true does nothing)."""
    import shutil
    import subprocess

    from tests.conftest import ROOT

    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    out = subprocess.run(
        ["make", "--no-print-directory", "STAMP=", "PY=true", *args],
        cwd=tmp_path,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


@pytest.mark.parametrize("target", ["baseline", "sweep", "worker", "report", "rerun", "robust"])
def test_make_does_not_echo_arguments_into_logs(tmp_path, target):
    assert make(tmp_path, target, f"ARGS=search.storage={URLS[0]}", "STUDY=it's") == ""


def test_make_clean_lists_what_it_deletes_and_keeps_server_artifacts(tmp_path):
    runs = tmp_path / "mlruns"
    (runs / "server-artifacts" / "1").mkdir(parents=True)
    (runs / "mlflow.db").touch()
    (runs / ".gitkeep").touch()
    said = make(tmp_path, "clean", stdin="y\n")
    assert "mlruns/mlflow.db" in said and "kept: mlruns/server-artifacts" in said
    assert sorted(p.name for p in runs.iterdir()) == [".gitkeep", "server-artifacts"]
    assert (runs / "server-artifacts" / "1").is_dir()


def test_server_basic_auth_needs_the_admins_own_config(tmp_path, monkeypatch, capsys):
    from sweep.cli.runner import main
    from sweep.serve.server import Exposure, server_args

    monkeypatch.delenv("MLFLOW_AUTH_CONFIG_PATH", raising=False)
    db = "postgresql://bob@127.0.0.1:1/mlflow"
    assert main(["server", "--basic-auth", "--backend-store-uri", db]) == 2
    assert "MLFLOW_AUTH_CONFIG_PATH" in capsys.readouterr().err
    args = server_args(db, str(tmp_path), Exposure("0.0.0.0", 5000, basic_auth=True))
    assert args[args.index("--app-name") + 1] == "basic-auth"
