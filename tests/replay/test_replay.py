"""Reruns from the MLflow record alone, reproducible studies, and seed robustness."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweep.cli.runner import main
from sweep.replay.rerun import (
    LOOSE_TOLERANCE,
    choose_tolerance,
    close_enough,
    compare_metric,
    environment_differences,
)
from sweep.replay.robust import Robustness, ranking_holds, robustness_rows
from tests.conftest import ROOT, TINY_SWEEP, clean_env, run_cli, sweep_cmd

SAME_ENV = {
    "versions": {"python": "3.11.7", "tensorflow": "2.21.0", "numpy": "2.4.6"},
    "platform": {"system": "Linux", "machine": "x86_64", "executable": "/a/python"},
    "runtime": {"cpu": "EPYC", "cpus": 2, "onednn_opts": "default", "op_determinism": True},
    "git": {"commit": "abc", "dirty": "false"},
    "data_digest": {"train": "1", "val": "2", "test": "3"},
    "deterministic": True,
}


# --------------------------------------------------------------------------- fast: pure logic


def test_same_environment_means_exact_tolerance():
    moved = {**SAME_ENV, "platform": {**SAME_ENV["platform"], "executable": "/b/python"}}
    assert environment_differences(SAME_ENV, moved) == []  # another clone's path is no difference
    assert choose_tolerance(None, []) == (0.0, "the default: same platform, versions and commit")


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            {"versions": {**SAME_ENV["versions"], "tensorflow": "2.20.0"}},
            "tensorflow 2.21.0 -> 2.20",
        ),
        ({"git": {"commit": "def", "dirty": "false"}}, "git commit abc -> def"),
        ({"git": {"commit": "abc", "dirty": "true"}}, "rerun's checkout had uncommitted"),
        ({"platform": {"system": "Darwin", "machine": "arm64"}}, "system Linux -> Darwin"),
        ({"runtime": {**SAME_ENV["runtime"], "cpu": "Xeon"}}, "cpu EPYC -> Xeon"),
        ({"data_digest": {"train": "9", "val": "2", "test": "3"}}, "data digest of train"),
    ],
)
def test_each_difference_is_named_and_loosens_the_default(change, said):
    differences = environment_differences(SAME_ENV, {**SAME_ENV, **change})
    assert any(said in d for d in differences), differences
    assert choose_tolerance(None, differences)[0] == LOOSE_TOLERANCE
    assert choose_tolerance(0.0, differences)[0] == 0.0  # the user's choice wins


def test_metric_comparison_verdicts():
    a = {1: 0.5, 2: 0.25, 3: 0.125}
    assert compare_metric("train_loss", a, dict(a), 0.0).verdict == "identical"
    near = {1: 0.5, 2: 0.25 * (1 + 1e-6), 3: 0.125}
    row = compare_metric("train_loss", a, near, 0.0)
    assert row.verdict == "DIFFERS" and row.failed
    assert row.steps == "1-3" and row.diff == pytest.approx(0.25e-6) and row.original == 0.25
    assert compare_metric("train_loss", a, near, 1e-3).verdict == "within tol"
    # a pruned original logged fewer epochs: compared over those; final metrics only in the rerun
    assert compare_metric("val_loss", {1: 0.4}, a, 0.0).verdict == "DIFFERS"
    assert compare_metric("val_loss", {1: 0.5}, {1: 0.5, 2: 0.1}, 0.0).verdict == "identical"
    assert compare_metric("val_mse", {}, {3: 0.1}, 0.0).failed is False
    # a rerun that lost epochs or metrics fails; a reproduced divergence (NaN) matches
    assert compare_metric("val_loss", a, {1: 0.5}, 0.0).failed
    assert compare_metric("val_mse", {3: 0.1}, {}, 0.0).verdict == "MISSING"
    assert compare_metric("val_loss", {1: math.nan}, {1: math.nan}, 0.0).verdict == "identical"
    assert not close_enough(math.nan, 0.1, 1.0)
    assert compare_metric("train_seconds", {3: 1.0}, {3: 2.0}, 0.0).failed is False


def test_robustness_table_ranks_by_mean():
    results = [
        Robustness(3, "r3", {"model.depth": 2}, 0.010, [1, 2], [0.030, 0.050]),
        Robustness(7, "r7", {"model.depth": 5}, 0.020, [1, 2], [0.020, 0.020]),
        Robustness(9, "r9", {"model.depth": 1}, 0.040, [1, 2], [math.nan, 0.060]),
    ]
    rows = robustness_rows(results)
    assert [r["trial"] for r in rows] == [3, 7, 9]  # original order
    assert [r["rank_by_mean"] for r in rows] == [2, 1, 3]
    assert rows[0]["val_mse_mean"] == pytest.approx(0.04)
    assert rows[0]["val_mse_std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert rows[2]["n_failed"] == 1 and rows[2]["val_mse_mean"] == pytest.approx(0.06)
    assert not ranking_holds(rows)
    assert ranking_holds(robustness_rows(results[1:]))


def test_robustness_table_follows_the_objective_and_its_direction():
    """A classifier's study maximizes val_accuracy: best first is highest, columns say so, and a
    configuration whose every seed diverged ranks last."""

    def scored(trial: int, original: float, values: list[float]) -> Robustness:
        r = Robustness(trial, f"r{trial}", {}, original, [1, 2], values)
        r.objective, r.direction = "val_accuracy", "maximize"
        return r

    rows = robustness_rows(
        [
            scored(3, 0.90, [0.80, 0.82]),
            scored(7, 0.95, [0.93, 0.91]),
            scored(9, 0.85, [math.nan] * 2),
        ]
    )
    assert [r["trial"] for r in rows] == [7, 3, 9]  # the study's order: highest first
    assert [r["rank_by_mean"] for r in rows] == [1, 2, 3]
    assert rows[0]["val_accuracy_mean"] == pytest.approx(0.92)
    assert rows[0]["val_accuracy_original"] == 0.95 and "val_mse_mean" not in rows[0]
    assert ranking_holds(rows)


def test_a_run_id_prefix_names_its_one_run_as_git_would(tmp_path, monkeypatch):
    import uuid

    from sweep.core.errors import ConfigError
    from sweep.replay.rerun import full_run_id
    from sweep.tracking import Reader

    reader = Reader(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = reader.client.create_experiment("e")
    ids = ["4a5de336" + "0" * 24, "4a5de336" + "1" * 24, "4a5d0000" + "2" * 24]
    made = iter(ids)  # run ids are uuid4's hex: these three, two sharing 8 digits
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(hex=next(made)))
    for n, _ in enumerate(ids):
        reader.client.create_run(experiment, run_name=f"trial-{n}")
    monkeypatch.undo()
    assert full_run_id(reader, "4a5d0") == ids[2]
    assert full_run_id(reader, ids[0]) == ids[0]
    cases = [
        ("4a5de336", f"ambiguous: {ids[0]} (trial-0), {ids[1]} (trial-1); give more digits"),
        ("ffff", "no run id in sqlite:///"),
        ("4a5", "is not an MLflow run id (32 hex digits) or the start of one (4 or more)"),
        ("4a5d'--", "is not an MLflow run id"),
    ]
    for given, said in cases:
        with pytest.raises(ConfigError, match=re.escape(said)) as err:
            full_run_id(reader, given)
        assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- end to end


def all_runs(store: Path) -> list:
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, max_results=1000)


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in ("train_loss", "val_loss", "train_mse", "val_mse", "test_mse")
    }


def replayed_run(store: Path, original_id: str):
    (run,) = [r for r in all_runs(store) if r.data.tags.get("sweep.rerun_of") == original_id]
    return run


def no_store_keys(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if not k.startswith(("tracking.", "paths."))}


def assert_identical_rerun(store: Path, original_id: str, out: subprocess.CompletedProcess):
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert re.search(r"^train_loss\s+1-4\s.*\s0\s+identical$", out.stdout, re.M), out.stdout
    assert "IDENTICAL" in out.stdout
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    new = replayed_run(store, original_id)
    original = client.get_run(original_id)
    assert new.data.tags["sweep.kind"] == "rerun"
    assert new.data.tags["sweep.rerun_verdict"] == "identical"
    assert new.info.run_id != original_id and new.info.status == "FINISHED"
    assert histories(client, new.info.run_id) == histories(client, original_id)
    assert no_store_keys(new.data.params) == no_store_keys(original.data.params)
    assert "rerun_comparison.json" in {a.path for a in client.list_artifacts(new.info.run_id)}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> tuple[Path, str]:
    """A store holding one tiny baseline run."""
    store = tmp_path_factory.mktemp("baseline")
    out = run_cli("baseline", "experiment=tiny", store=store)
    assert out.returncode == 0, out.stderr
    return store, re.search(r"make rerun RUN_ID=([0-9a-f]{32})", out.stdout).group(1)


@pytest.fixture(scope="module")
def second_sweep(tmp_path_factory) -> Path:
    """The shared sweep's command again in a new store: for robust, which writes to the parent."""
    store = tmp_path_factory.mktemp("second-sweep")
    out = run_cli(*TINY_SWEEP, store=store)
    assert out.returncode == 0, out.stderr
    return store


@pytest.fixture(scope="module")
def changed_conf(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of the project whose conf/ has other defaults (width, epochs, seed)."""
    copy = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "conf", copy / "conf")
    for rel, key, value in (
        ("conf/model/mlp.yaml", "width", 33),
        ("conf/experiment/tiny.yaml", "trainer", {"epochs": 6, "batch_size": 50}),
        ("conf/config.yaml", "seed", 99),
    ):
        data = yaml.safe_load((copy / rel).read_text())
        data[key] = value
        text = yaml.safe_dump(data, sort_keys=False)
        if rel.endswith("tiny.yaml"):
            text = "# @package _global_\n" + text
        (copy / rel).write_text(text)
    env = {**clean_env(), "PYTHONPATH": str(copy / "src")}
    composed = sweep_cmd("baseline", "experiment=tiny", "--cfg", "job", cwd=copy, env=env)
    assert composed.returncode == 0, composed.stderr
    job = yaml.safe_load(composed.stdout)
    assert (job["model"]["width"], job["trainer"]["epochs"], job["seed"]) == (33, 6, 99)
    return copy, env


@pytest.mark.slow
def test_baseline_rerun_is_identical_though_conf_changed(baseline, changed_conf):
    store, run_id = baseline
    copy, env = changed_conf
    before = len(all_runs(store))
    out = sweep_cmd("rerun", run_id, "--store", str(store), cwd=copy, env=env)
    assert_identical_rerun(store, run_id, out)
    assert len(all_runs(store)) == before + 1
    new = replayed_run(store, run_id)
    assert (new.data.params["model.width"], new.data.params["trainer.epochs"]) == ("20", "4")


@pytest.mark.slow
def test_sweep_trial_rerun_is_identical_though_conf_changed(tiny_sweep_store, changed_conf):
    swept = tiny_sweep_store
    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{swept}/optuna.db")
    proposed = [t for t in study.trials if t.state.name == "COMPLETE" and t.number > 0]
    trial = proposed[-1]  # a sampled configuration, not the enqueued baseline
    run_id = trial.user_attrs["mlflow_run_id"]
    copy, env = changed_conf
    # the 8 digits its trial line printed, as git takes a short commit
    out = sweep_cmd("rerun", run_id[:8], "--store", str(swept), cwd=copy, env=env)
    assert_identical_rerun(swept, run_id, out)
    params = replayed_run(swept, run_id).data.params
    assert params["model.depth"] == str(trial.params["model.depth"])
    assert float(params["optimizer.learning_rate"]) == trial.params["optimizer.learning_rate"]


@pytest.mark.slow
def test_a_baseline_in_a_clean_clone_reruns_exactly(tmp_path):
    clone, store = tmp_path / "clone", tmp_path / "store"
    git = ["git", "-C", str(clone)]
    cloned = subprocess.run(
        ["git", "clone", "--quiet", str(ROOT), str(clone)], capture_output=True, text=True
    )
    assert cloned.returncode == 0, cloned.stderr
    env = {**clean_env(), "PYTHONPATH": str(clone / "src")}
    out = sweep_cmd("baseline", "experiment=tiny", f"paths.store={store}", cwd=clone, env=env)
    assert out.returncode == 0, out.stderr
    run_id = re.search(r"make rerun RUN_ID=([0-9a-f]{32})", out.stdout).group(1)
    out = sweep_cmd("rerun", run_id, "--store", str(store), cwd=clone, env=env)
    written = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout
    assert written == "", f"a command wrote to tracked files, so every run is git dirty:\n{written}"
    assert_identical_rerun(store, run_id, out)
    assert "tolerance: exact (the default: same platform, versions and commit)" in out.stdout
    assert re.search(r"^rerun [0-9a-f]{32}: IDENTICAL$", out.stdout, re.M), out.stdout
    assert "environment differs" not in out.stdout


@pytest.mark.slow
def test_a_pruned_trial_replays_up_to_its_pruning_epoch(tiny_sweep_store, capsys):
    study = optuna.load_study(
        study_name="sine-mlp", storage=f"sqlite:///{tiny_sweep_store}/optuna.db"
    )
    trial = next(t for t in study.trials if t.state.name == "PRUNED")
    run_id, pruned_at = trial.user_attrs["mlflow_run_id"], max(trial.intermediate_values)
    capsys.readouterr()
    assert main(["rerun", run_id, "--store", str(tiny_sweep_store)]) == 0
    out = capsys.readouterr().out
    assert "note: the original ended KILLED (PRUNED); compared over the epochs it logged" in out
    # identical from a clean checkout; within tolerance from one with uncommitted changes
    verdict = re.search(r"^rerun [0-9a-f]{32}: (IDENTICAL|WITHIN TOLERANCE)$", out, re.M)
    assert verdict, out
    new = replayed_run(tiny_sweep_store, run_id)
    assert new.data.tags["sweep.rerun_verdict"] == verdict.group(1).lower()
    assert new.data.params["trainer.epochs"] == str(pruned_at)
    client = MlflowClient(f"sqlite:///{tiny_sweep_store}/mlflow.db")
    again, original = histories(client, new.info.run_id), histories(client, run_id)
    assert [step for step, _ in again["val_loss"]] == list(range(1, pruned_at + 1))
    for key in ("train_loss", "val_loss", "train_mse", "val_mse", "test_mse"):
        assert len(again[key]) == len(original[key]) > 0, key
        for (step, value), (step0, value0) in zip(again[key], original[key], strict=True):
            assert step == step0 and value == pytest.approx(value0, rel=LOOSE_TOLERANCE), key


@pytest.mark.slow
def test_two_new_studies_with_one_worker_propose_the_same_trials(tiny_sweep_store, second_sweep):
    def sequence(store: Path) -> list:
        study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{store}/optuna.db")
        return [(t.number, t.state.name, t.params, t.value) for t in study.trials]

    first, second = sequence(tiny_sweep_store), sequence(second_sweep)
    assert sum(state in ("COMPLETE", "PRUNED") for _, state, _, _ in first) == 5
    assert len({json.dumps(p, sort_keys=True) for _, _, p, _ in first}) == len(first)  # sampled
    assert second == first


@pytest.mark.slow
def test_robust_logs_its_table_and_plot_to_the_parent(second_sweep, tmp_path):
    swept = second_sweep
    out = sweep_cmd("robust", "sine-mlp", "--top", "2", "--seeds", "2", "--store", str(swept))
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"ranking by mean val_mse over 2 seeds (HOLDS|CHANGES)", out.stdout)
    assert len(re.findall(r"trial \d+ seed \d+: val_mse=[0-9.e+-]+\n", out.stdout)) == 4
    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{swept}/optuna.db")
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    client = MlflowClient(f"sqlite:///{swept}/mlflow.db")
    files = {a.path for a in client.list_artifacts(parent_id, "robust")}
    assert {f"robust/seed_robustness.{ext}" for ext in ("csv", "md", "json", "png")} <= files
    path = client.download_artifacts(parent_id, "robust/seed_robustness.json", str(tmp_path))
    table = json.loads(Path(path).read_text())
    best = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    rows = table["configurations"]
    assert [r["trial"] for r in rows] == [t.number for t in best[:2]]
    assert table["ranking_holds"] == all(r["rank_original"] == r["rank_by_mean"] for r in rows)
    children = [r for r in all_runs(swept) if r.data.tags.get("sweep.kind") == "robust"]
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent_id}
    for row in rows:
        mine = [r for r in children if r.data.tags["sweep.robust_of_trial"] == str(row["trial"])]
        assert sorted(r.data.params["seed"] for r in mine) == ["1", "2"] == row["seeds"].split()
        values = [r.data.metrics["val_mse"] for r in mine]
        assert row["val_mse_mean"] == pytest.approx(sum(values) / 2)
        assert row["val_mse_min"] == min(values) and row["val_mse_max"] == max(values)
        assert row["val_mse_original"] not in values  # new seeds, new results


def plain_mlflow_run(store: Path) -> str:
    """A run logged by plain MLflow: params and a metric, no replay record."""
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.get_experiment_by_name("plain") or client.get_experiment(
        client.create_experiment("plain", artifact_location=(store / "plain").as_uri())
    )
    run = client.create_run(exp.experiment_id)
    client.log_param(run.info.run_id, "lr", 0.01)
    client.log_metric(run.info.run_id, "val_loss", 0.1, step=1)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.mark.slow
def test_errors_are_one_line_and_log_nothing(baseline, tiny_sweep_store, tmp_path, capsys):
    store, baseline_id = baseline
    swept = tiny_sweep_store
    plain_id = plain_mlflow_run(store)
    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{swept}/optuna.db")
    cases = [
        (["0" * 32, "--store", str(store)], store, "is not in the tracking store"),
        (["nope", "--store", str(store)], store, "is not an MLflow run id"),
        ([baseline_id, "--store", str(swept)], swept, "if it was logged to another store"),
        ([plain_id, "--store", str(store)], store, f"run {plain_id} has no replay record"),
        ([study.user_attrs["mlflow_parent_run_id"], "--store", str(swept)], swept, "parent run"),
        ([baseline_id, "--store", str(tmp_path / "none")], None, "no MLflow store at"),
    ]
    capsys.readouterr()
    for args, counted, said in cases:
        before = len(all_runs(counted)) if counted else 0
        assert main(["rerun", *args]) == 2, args
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], lines
        assert out.out == ""
        assert (len(all_runs(counted)) if counted else 0) == before
    assert not (tmp_path / "none").exists()
    assert main(["robust", "no-such-study", "--store", str(swept)]) == 2
    assert "no study 'no-such-study' in sqlite:///" in capsys.readouterr().err
    # and as a user sees it: one line, no traceback, from a real process
    before = len(all_runs(store))
    out = sweep_cmd("rerun", plain_id, "--store", str(store))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        f"error: run {plain_id} has no replay record here: its artifact folder "
        f"{store / 'plain' / plain_id / 'artifacts'} does not exist "
        "(a run logged on another machine, or one without artifacts)"
    ]
    assert len(all_runs(store)) == before


def forged_copy(store: Path, run_id: str, replay_edit: dict, scale: float) -> str:
    """A run holding `run_id`'s record (edited) and its metrics, val_loss at epoch 2 scaled."""
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    source = client.get_run(run_id)
    run = client.create_run(source.info.experiment_id, run_name="forged")
    new_id = run.info.run_id
    for key, value in source.data.params.items():
        client.log_param(new_id, key, value)
    for key in source.data.metrics:
        for m in client.get_metric_history(run_id, key):
            value = m.value * scale if (key, m.step) == ("val_loss", 2) else m.value
            client.log_metric(new_id, key, value, step=m.step)
    folder = Path(client.download_artifacts(run_id, "", str(store / f"dl-{new_id}")))
    replay = json.loads((folder / "replay.json").read_text())
    for section, values in replay_edit.items():
        replay[section].update(values)
    (folder / "replay.json").write_text(json.dumps(replay))
    for name in ("config.yaml", "replay.json", "overrides.txt"):
        client.log_artifact(new_id, str(folder / name))
    client.set_terminated(new_id)
    return new_id


@pytest.mark.slow
def test_a_result_that_differs_fails_and_other_versions_loosen_the_default(baseline):
    store, run_id = baseline
    off = forged_copy(store, run_id, {}, 1 + 1e-6)
    out = sweep_cmd("rerun", off, "--tolerance", "0", "--store", str(store))
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"^val_loss\s+1-4\s.*DIFFERS$", out.stdout, re.M), out.stdout
    assert "DIFFERS beyond the tolerance in val_loss" in out.stdout
    assert replayed_run(store, off).data.tags["sweep.rerun_verdict"] == "differs"

    old = forged_copy(
        store, run_id, {"versions": {"tensorflow": "2.0.0"}, "git": {"commit": "0" * 40}}, 1 + 1e-5
    )
    out = sweep_cmd("rerun", old, "--store", str(store))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "tensorflow 2.0.0 -> 2.21" in out.stdout and "git commit 000000000000 ->" in out.stdout
    assert "tolerance: relative 0.001 (default when the environment differs)" in out.stdout
    assert re.search(r"^val_loss\s+1-4\s.*within tol$", out.stdout, re.M), out.stdout
    assert re.search(r"^rerun [0-9a-f]{32}: WITHIN TOLERANCE$", out.stdout, re.M), out.stdout
    assert replayed_run(store, old).data.tags["sweep.rerun_verdict"] == "within tolerance"
