"""Issue 14, sizes and names: what anyone who can write to the shared stores may ask for is bounded.

Each test plays that attacker (docs/security.md): a name `make clean` would have split or
globbed, a record asking for a billion units, a `.keras` file that inflates 1,000-fold, a parent
run whose params would have ended `sweep ui` in a traceback for everyone.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from sweep.core.errors import ConfigError
from tests.conftest import ROOT

MAKEFILE = ROOT / "Makefile"

# --------------------------------------------------------------------------- make clean


def clean(checkout: Path, answer: str) -> str:
    """`make clean` in a copy of the checkout, answering the question with `answer`."""
    shutil.copy(MAKEFILE, checkout / "Makefile")
    out = subprocess.run(
        ["make", "--no-print-directory", "-C", str(checkout), "clean"],
        input=answer,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def checkout_with(tmp_path: Path, name: str) -> Path:
    """A checkout whose mlruns/ holds a local store, the server's artifacts and `name`, beside a
    `notes/` folder of the user's that a split `mlruns/old notes` would name."""
    runs = tmp_path / "mlruns"
    (runs / "server-artifacts" / "1").mkdir(parents=True)
    (runs / ".gitkeep").touch()
    (runs / "mlflow.db").touch()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("keep me")
    (runs / name).mkdir()
    (runs / name / "x").touch()
    return runs


@pytest.mark.parametrize(
    ("name", "listed"),
    [
        ("old notes", "mlruns/old notes"),  # split: rm -rf mlruns/old notes -> ./notes
        ("*", "mlruns/*"),  # globbed: rm -rf mlruns/* -> mlruns/server-artifacts
        ("-rf notes", "mlruns/-rf notes"),  # a leading dash, split: -rf and ./notes
        ("old\nnotes", "mlruns/old?notes"),  # split on the newline -> ./notes
    ],
    ids=["space", "glob", "dash", "newline"],
)
def test_make_clean_deletes_exactly_the_names_it_lists(tmp_path, name, listed):
    runs = checkout_with(tmp_path, name)
    said = clean(tmp_path, "y\n")
    assert listed in said.splitlines() and "mlruns/mlflow.db" in said.splitlines(), said
    assert sorted(p.name for p in runs.iterdir()) == [".gitkeep", "server-artifacts"]
    assert (runs / "server-artifacts" / "1").is_dir()
    assert (tmp_path / "notes" / "thesis.txt").read_text() == "keep me"


def test_make_clean_answered_no_deletes_nothing(tmp_path):
    runs = checkout_with(tmp_path, "*")
    assert "mlruns/*" in clean(tmp_path, "n\n")
    assert sorted(p.name for p in runs.iterdir()) == [
        "*",
        ".gitkeep",
        "mlflow.db",
        "server-artifacts",
    ]


# --------------------------------------------------------------------------- records


@pytest.fixture
def today(compose_cfg) -> dict:
    """Today's resolved config, as a run would log it."""
    from omegaconf import OmegaConf

    from sweep.config.checks import prepare

    return OmegaConf.to_container(prepare(compose_cfg("experiment=tiny")))


def forged(tracker, config: str, replay: str = "{}", tags: dict | None = None) -> str:
    """A run whose record (config.yaml, replay.json) an attacker wrote as text; returns its id."""
    run = tracker.start_run("forged", tags=tags)
    run.client.log_text(run.run_id, config, "config.yaml")
    run.client.log_text(run.run_id, replay, "replay.json")
    run.end()
    return run.run_id


def edited(today: dict, edit: dict) -> str:
    """today's config with edit merged in; a search.space in edit replaces today's whole."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(OmegaConf.merge(today, edit))
    if "space" in edit.get("search", {}):
        data["search"]["space"] = edit["search"]["space"]
    return yaml.safe_dump(data)


def rerun_refused(tracker, run_id: str, capsys) -> str:
    """`rerun` of the forged run: exit 2, one line, and no run made; returns the line."""
    from sweep.cli.runner import main

    before = len(tracker.client.search_runs([tracker.experiment_id]))
    assert main(["rerun", run_id, "--store", str(Path(tracker.artifact_root).parent)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert len(tracker.client.search_runs([tracker.experiment_id])) == before
    return err


def space(**exprs: str) -> dict:
    """A record's search.space sweeping model.<key> only."""
    return {"search": {"space": {"model": exprs}}}


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        ({"model": {"width": 10**9}}, "asks for model.width=1000000000; a record may ask for"),
        ({"model": {"depth": 10**6}}, "asks for model.depth=1000000; a record may ask for"),
        ({"trainer": {"epochs": 10**12}}, "trainer.epochs=1000000000000; a record may"),
        ({"trainer": {"batch_size": 10**12}}, "trainer.batch_size=1000000000000; a record"),
        ({"trainer": {"threads": 10**6}}, "trainer.threads=1000000; a record may ask"),
        ({"search": {"n_trials": 10**12}}, "search.n_trials=1000000000000; a record may"),
        ({"search": {"jobs": 10**6}}, "search.jobs=1000000; a record may ask for"),
        ({"data": {"n_val": 10**9}}, "data.n_val=1000000000; a record may ask for"),
        ({"model": {"depth": 100, "width": 100_000}}, "a 100x100000 MLP, 990,010,200,001 param"),
        (space(width="int(interval(8, 1000000000))"), "search.space can sample model.width="),
        (
            space(depth="int(interval(1, 1000))", width="int(interval(8, 100000))"),
            "search.space can sample a 1000x100000 MLP",
        ),
        (space(width=f"choice({','.join(map(str, range(1, 2001)))})"), "lists 2,000 choices"),
        (space(width="choice(" + "8, " * 5000 + "9)"), "longer than 10,000 characters"),
        (
            {"search": {"space": {"model": {f"k{i}": "choice(1, 2)" for i in range(101)}}}},
            "sweeps 101 keys",
        ),
    ],
    ids=[
        *("width", "depth", "epochs", "batch", "threads", "trials", "jobs", "n_val", "params"),
        *("space-width", "space-params", "choices", "expression", "keys"),
    ],
)
def test_a_record_asking_for_too_much_is_refused_before_anything_is_built(
    tracker, today, edit, said, capsys
):
    err = rerun_refused(tracker, forged(tracker, edited(today, edit)), capsys)
    assert said in err, err


def alias_bomb() -> str:
    """Twenty lines of YAML that are 10**9 values once walked."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("config", "replay", "said"),
    [
        (alias_bomb(), "{}", "config.yaml is larger than a record may be"),
        ("a: " + "[" * 40 + "]" * 40 + "\n", "{}", "levels deep"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "{}", "config.yaml is not YAML"),
        ("seed: 0\npad: " + "x" * 1_000_000 + "\n", "{}", "characters; a record holds at"),
        (None, "[" * 5000 + "]" * 5000, "replay.json is not JSON"),
        (None, "[1, 2]", "replay.json is not a mapping"),
        (None, json.dumps({"overrides": [[[]]] * 10_001}), "replay.json is larger than a record"),
    ],
    ids=["alias-bomb", "deep", "recursion", "huge", "json-recursion", "json-list", "json-wide"],
)
def test_a_record_of_a_hostile_shape_is_one_line(tracker, today, config, replay, said, capsys):
    run_id = forged(tracker, config or yaml.safe_dump(today), replay)
    assert said in rerun_refused(tracker, run_id, capsys)


def test_bounds_let_through_every_value_at_its_cap(compose_cfg):
    from omegaconf import OmegaConf

    from sweep.config.checks import prepare
    from sweep.replay.record import LIMITS, MAX_PARAMS, check_bounds, mlp_params

    cfg = prepare(compose_cfg("experiment=tiny"))
    check_bounds(cfg)  # today's config and its space
    cfg.model.depth, cfg.model.width = 1, 8  # a million units fit in one layer, not in two
    cfg.search.space = {}
    for key, cap in LIMITS.items():
        edge = OmegaConf.create(OmegaConf.to_container(cfg))
        OmegaConf.update(edge, key, cap, force_add=True)
        check_bounds(edge)
        OmegaConf.update(edge, key, cap + 1)
        with pytest.raises(ConfigError, match=f"asks for {key}={cap + 1}; a record may"):
            check_bounds(edge)
    cfg.model.depth, cfg.model.width = 1000, 300  # 90 million parameters: allowed
    assert mlp_params(cfg) <= MAX_PARAMS
    check_bounds(cfg)


@pytest.mark.slow  # 100,001 metric steps logged and read back: about a minute
def test_a_pruned_record_with_a_forged_history_cannot_ask_for_more_epochs(tracker, today, capsys):
    """`rerun` of a PRUNED trial replays as many epochs as its val_loss history has steps."""
    import time

    from mlflow.entities import Metric

    from sweep.replay.record import LIMITS

    run_id = forged(tracker, yaml.safe_dump(today), tags={"sweep.state": "PRUNED"})
    now = int(time.time() * 1000)
    steps = LIMITS["trainer.epochs"] + 1
    for start in range(0, steps, 1000):
        batch = [Metric("val_loss", 0.1, now, s) for s in range(start, min(start + 1000, steps))]
        tracker.client.log_batch(run_id, metrics=batch)
    assert f"trainer.epochs={steps}" in rerun_refused(tracker, run_id, capsys)


# --------------------------------------------------------------------------- models


@pytest.fixture
def logged_keras(tracker) -> tuple[str, str, Path]:
    """A run with a small Keras model logged: (uri, run id, its model.keras on disk)."""
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
    folder = Path(tracker.artifact_root, "models", model_id, "artifacts")
    return tracker.uri, run.run_id, folder


def rewrite(path: Path, members: dict[str, bytes | int], keep: Path | None = None) -> None:
    """Write a .keras zip at path: each member as bytes (stored, as Keras does), or as a count
    of spaces deflated and streamed in (a bomb, never held in memory); `keep`: the rest."""
    old = {}
    if keep is not None:
        with zipfile.ZipFile(keep) as z:
            old = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**old, **members}.items():
            if isinstance(data, bytes):
                z.writestr(name, data)
                continue
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w") as f:
                for _ in range(data >> 20):
                    f.write(b" " * (1 << 20))


def declare_sizes(path: Path, size: int) -> None:
    """Make every member's central-directory entry claim `size` bytes uncompressed."""
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    entries, _, at = struct.unpack_from("<HII", data, end + 10)
    for _ in range(entries):
        struct.pack_into("<I", data, at + 24, size)
        names, extra, comment = struct.unpack_from("<HHH", data, at + 28)
        at += 46 + names + extra + comment
    path.write_bytes(bytes(data))


def test_a_keras_bomb_is_refused_before_keras_reads_it(logged_keras):
    from sweep.tracking import load_run_model

    uri, run_id, folder = logged_keras
    model = folder / "data" / "model.keras"
    real = model.with_name("real.keras")
    shutil.move(model, real)
    cases = {  # each 32 KB inflating 1,000-fold to 32 MB: Keras's own guard starts at 4 GiB
        "config.json": {"config.json": 32 << 20},
        "model.weights.h5": {"model.weights.h5": 32 << 20},
    }
    for member, edit in cases.items():
        rewrite(model, edit, keep=real)
        assert model.stat().st_size < 1 << 20
        with pytest.raises(ConfigError, match=f"its .keras member '{member}' inflates") as err:
            load_run_model(uri, run_id)
        assert "\n" not in str(err.value)


def test_a_keras_file_declaring_more_than_the_cap_is_refused(logged_keras):
    from sweep.tracking import load_run_model

    uri, run_id, folder = logged_keras
    model = folder / "data" / "model.keras"
    rewrite(model, {"a": b"1", "b": b"2"}, keep=model)
    declare_sizes(model, 3 << 30)  # 5 members of 3 GiB each, stored in a few KB
    with pytest.raises(ConfigError, match=r"inflates to 16,106,127,360 bytes \(at most"):
        load_run_model(uri, run_id)


def test_a_keras_file_of_many_members_is_refused_before_zipfile_lists_them(logged_keras):
    from sweep.tracking import load_run_model

    uri, run_id, folder = logged_keras
    model = folder / "data" / "model.keras"
    rewrite(model, {f"assets/{i:06d}": b"" for i in range(20_000)}, keep=model)
    with pytest.raises(ConfigError, match="not a plain zip of Keras's"):
        load_run_model(uri, run_id)


@pytest.mark.parametrize(("member", "size"), [("MLmodel", 2 << 20), ("data/model.keras", 5 << 30)])
def test_a_model_file_listed_larger_than_its_cap_is_not_downloaded(logged_keras, member, size):
    from sweep.tracking import load_run_model

    uri, run_id, folder = logged_keras
    with (folder / member).open("r+b") as f:
        f.truncate(size)  # sparse: listed at its size, nothing written
    with pytest.raises(ConfigError, match=f"its {member} is {size:,} bytes"):
        load_run_model(uri, run_id)


# --------------------------------------------------------------------------- the UI


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('ui')}/mlflow.db"
    MlflowClient(uri).search_experiments()  # creates the schema once
    return uri


def parent(client, experiment_id: str, study: str, params: dict[str, str]) -> str:
    """A sweep parent run, tagged and with params as study.py logs them."""
    tags = {"sweep.kind": "sweep", "sweep.study_name": study}
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, value)
    return run_id


GOOD = {
    "sweep.params": "model.depth,model.width,optimizer.learning_rate",
    "sweep.objectives": "val_mse",
    "sweep.directions": "minimize",
}
LONG = ",".join(f"k{i}" for i in range(1000))  # 1,000 keys: a view of 60,000 characters


@pytest.mark.parametrize(
    ("hostile", "said"),
    [
        ({"sweep.objectives": "; drop"}, "sweep.objectives holds '; drop', not a metric"),
        ({"sweep.objectives": "{{"}, "sweep.objectives holds '{{', not a metric"),
        ({"sweep.objectives": "x" * 5000}, "holds 'xxxxx"),
        ({"sweep.objectives": "mse\u202e\x1b[2J"}, r"holds 'mse\u202e\x1b[2J'"),
        ({"sweep.objectives": "val_mae,n_params", "sweep.directions": "minimize"}, "for each of 2"),
        ({"sweep.objectives": "val_mse", "sweep.directions": "upward"}, "upward"),
        ({"sweep.params": "model.depth,`x`) OR 1=1"}, "sweep.params holds '`x`) OR 1=1'"),
        ({"sweep.params": LONG}, "sweep.params lists 1,000 keys"),
    ],
    ids=["quote", "braces", "long", "escapes", "one-direction", "direction", "column", "many"],
)
def test_a_forged_parent_is_skipped_in_one_line_and_the_good_one_listed(
    ui_store, hostile, said, capsys, request
):
    from mlflow import MlflowClient

    from sweep.serve.ui import SHARE_TAG, VIEW_NESTED, addresses
    from sweep.tracking import Experiments

    client = MlflowClient(ui_store)
    experiment_id = client.create_experiment(request.node.callspec.id)
    parent(client, experiment_id, "good", GOOD)
    bad = parent(client, experiment_id, "evil\x1b[2J", {**GOOD, **hostile})
    lines = addresses(Experiments(ui_store), "http://127.0.0.1:5000")
    err = capsys.readouterr().err.splitlines()
    assert all(line.startswith("ui: ") for line in err), err  # other tests' parents: said too
    said_here = [line for line in err if bad in line]
    assert len(said_here) == 1, err
    assert said_here[0].startswith(f"ui: skipped parent run {bad} (study 'evil\\x1b[2J'): ")
    assert said in said_here[0] and len(said_here[0]) < 300, said_here
    start = lines.index(f"experiment '{request.node.callspec.id}':")
    block = lines[start : start + 5]
    assert block[2].startswith("  all runs by val_mse, best first"), block
    assert block[4].startswith("  learning curves of study 'good'  http"), block
    view = json.loads(client.get_experiment(experiment_id).tags[SHARE_TAG + VIEW_NESTED])
    assert view["compareRunCharts"][0]["selectedParams"] == GOOD["sweep.params"].split(",")


def test_a_view_too_long_for_mlflow_is_skipped_in_one_line(ui_store, capsys):
    from mlflow import MlflowClient

    from sweep.serve.ui import SHARE_TAG, VIEW_NESTED, addresses
    from sweep.tracking import Experiments

    client = MlflowClient(ui_store)
    experiment_id = client.create_experiment("wide")
    for study in "abc":  # each within the caps; together 300 columns
        keys = ",".join(f"{study}.key_{i:03d}_{'x' * 40}" for i in range(100))
        parent(client, experiment_id, study, {**GOOD, "sweep.params": keys})
    lines = addresses(Experiments(ui_store), "http://127.0.0.1:5000")
    err = [e for e in capsys.readouterr().err.splitlines() if f"experiment {experiment_id} " in e]
    assert "experiment 'wide':" in lines
    assert len(err) == 2 and all("characters, MLflow keeps at most 20,000" in e for e in err)
    assert SHARE_TAG + VIEW_NESTED not in client.get_experiment(experiment_id).tags
