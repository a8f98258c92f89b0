"""What a long unattended sweep meets: hard kills, Ctrl-C, NaN losses, bad input, many workers."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweep.core.processes import stop
from tests.conftest import ROOT, clean_env, run_cli

# Beats every second, but a live trial must survive a loaded 2-core machine: SQLite's now() has
# one-second resolution and a starved heartbeat thread can lag seconds, so grace is 10 s.
FAST = ["experiment=tiny", "search.heartbeat_interval=1", "search.grace_period=10"]


def _study(store: Path) -> optuna.Study:
    return optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{store}/optuna.db")


def _finished(study: optuna.Study) -> list:
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


def _runs(store: Path) -> list:
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.get_experiment_by_name("sine")
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _none_left_running() -> Iterator[None]:
    """Whatever a test's outcome, what it started is gone before the next test: a sweep left
    training after a failed wait would starve (and time out) every test after it."""
    yield
    while _STARTED:
        stop(_STARTED.pop(), grace=10)


def _popen(
    store: Path, *args: str, command: str = "sweep", merge: bool = False
) -> subprocess.Popen:
    """`python -m sweep <command> <args>` started in the background, as a user's shell would,
    in a session of its own so that no signal meant for it reaches pytest or the reverse."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep", command, *args, f"paths.store={store}"],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge else subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _STARTED.append(proc)
    return proc


def _wait_for_running_trial(store: Path, after: int, timeout: float = 180) -> int:
    """Block until a trial numbered >= after is RUNNING with its MLflow run created."""
    query = (
        "select t.number from trials t join trial_user_attributes a on a.trial_id = t.trial_id "
        "where t.state = 'RUNNING' and a.key = 'mlflow_run_id' and t.number >= ?"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(store / "optuna.db", timeout=5) as con:
                row = con.execute(query, (after,)).fetchone()
        except sqlite3.Error:  # not created yet
            row = None
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError("no trial started")


@pytest.mark.slow
def test_sigkill_mid_trial_then_resume_finishes_exactly(tmp_path):
    args = [*FAST, "search.n_trials=4", "trainer.epochs=200", "search/pruner=none"]
    proc = _popen(tmp_path, *args)
    killed = _wait_for_running_trial(tmp_path, after=1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert _study(tmp_path).trials[killed].state.name == "RUNNING"  # what a hard kill leaves

    out = run_cli("sweep", *args, store=tmp_path)
    assert out.returncode == 0, out.stderr
    study = _study(tmp_path)
    assert study.trials[killed].state.name == "FAIL"
    assert len(_finished(study)) == 4
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert retried and retried[0].params == study.trials[killed].params

    runs = _runs(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    killed_run = next(
        r for r in runs if r.info.run_id == study.trials[killed].user_attrs["mlflow_run_id"]
    )
    assert killed_run.info.status == "KILLED"
    finished_run_ids = [t.user_attrs["mlflow_run_id"] for t in _finished(study)]
    assert len(set(finished_run_ids)) == 4


@pytest.mark.slow
def test_sigint_closes_the_current_trial_and_the_same_command_retries_it(tmp_path):
    long = [*FAST, "trainer.epochs=300"]  # ~3 s a trial: the SIGINT lands inside it
    proc = _popen(tmp_path, *long, "search.n_trials=5")
    number = _wait_for_running_trial(tmp_path, after=0)  # the enqueued baseline, trial 0
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "run the same command again" in stdout
    trial = _study(tmp_path).trials[number]
    assert trial.state.name == "FAIL" and trial.user_attrs["fail_reason"] == "interrupted"
    runs = {r.info.run_id: r for r in _runs(tmp_path)}
    assert runs[trial.user_attrs["mlflow_run_id"]].info.status == "KILLED"
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]

    (queued,) = [t for t in _study(tmp_path).trials if t.state.name == "WAITING"]
    assert queued.user_attrs == {"retry_of": number, "baseline": True}
    assert queued.system_attrs["fixed_params"] == trial.params  # where Optuna keeps them queued

    # Resumed with room for one more trial: the queued retry is the one evaluated.
    done = len(_finished(_study(tmp_path)))
    out = run_cli("sweep", *long, f"search.n_trials={done + 1}", store=tmp_path)
    assert out.returncode == 0, out.stderr
    retried = _study(tmp_path).trials[queued.number]
    assert retried.state.name in ("COMPLETE", "PRUNED")
    assert retried.params == trial.params and retried.user_attrs["retry_of"] == number
    assert not [t for t in _study(tmp_path).trials if t.state.name in ("WAITING", "RUNNING")]


@pytest.mark.slow
def test_sigterm_to_a_two_worker_sweep_stops_both_workers_cleanly(tmp_path):
    proc = _popen(tmp_path, *FAST, "search.n_trials=8", "trainer.epochs=300", "search.jobs=2")
    _wait_for_running_trial(tmp_path, after=1)
    proc.send_signal(signal.SIGTERM)  # to the parent alone, as a scheduler would
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "run the same command again" in stdout
    study = _study(tmp_path)
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    runs = _runs(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parent = next(r for r in runs if r.data.tags.get("sweep.kind") == "sweep")
    assert parent.info.status == "KILLED"


@pytest.mark.slow
def test_diverging_trials_fail_with_a_reason_and_the_sweep_goes_on(tmp_path):
    args = [
        "experiment=tiny",
        "model.activation=relu",
        "~search.space.model",
        "search.space.optimizer.learning_rate='choice(0.01, 8.0)'",
        "search/sampler=random",
        "search.n_trials=3",
        "search/pruner=none",
    ]
    out = run_cli("sweep", *args, store=tmp_path)
    assert out.returncode == 0, out.stderr
    study = _study(tmp_path)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed, "expected lr=8.0 to diverge"
    assert len(_finished(study)) == 3
    runs = {r.info.run_id: r for r in _runs(tmp_path)}
    for trial in failed:
        assert trial.params["optimizer.learning_rate"] == 8.0
        assert trial.user_attrs["fail_reason"].startswith("loss diverged")
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FAILED"
        assert run.data.tags["fail_reason"] == trial.user_attrs["fail_reason"]
        assert "loss diverged" in out.stdout


@pytest.mark.slow
def test_a_sweep_where_every_trial_fails_stops_with_one_line(tmp_path):
    args = [
        "experiment=tiny",
        "model.activation=relu",
        "~search.space.model",
        "search.space.optimizer.learning_rate='choice(8.0)'",
        "search.enqueue_baseline=false",
        "search.n_trials=5",
        "search.max_failed_trials=2",
    ]
    out = run_cli("sweep", *args, store=tmp_path)
    assert out.returncode == 1
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith("error: study 'sine-mlp' has 2 failed trials")
    )
    assert "Traceback" not in out.stderr
    assert len(_study(tmp_path).trials) == 2


@pytest.fixture(scope="module")
def used_store(tmp_path_factory) -> Path:
    """A store holding one finished one-trial study, to prove bad input leaves it untouched."""
    store = tmp_path_factory.mktemp("store")
    out = run_cli("sweep", "experiment=tiny", "search.n_trials=1", store=store)
    assert out.returncode == 0, out.stderr
    return store


def _snapshot(store: Path) -> tuple:
    study = _study(store)
    return (
        len(optuna.get_all_study_names(f"sqlite:///{store}/optuna.db")),
        len(study.trials),
        len(_runs(store)),
    )


BAD_INPUT = [
    (["model.activation=swishy"], "model.activation='swishy' is not one of: tanh"),
    (["optimizer._target_=os.system"], "optimizer._target_='os.system' is not allowed"),
    (["+search.sampler.foo=1"], "search.sampler: TPESampler got an unexpected keyword argument"),
    (["optimizer=adagrad"], "Could not find 'optimizer/adagrad'"),
    (["model.depth=0"], "model.depth must be a positive integer, got 0"),
    (["model.width=-3"], "model.width must be a positive integer, got -3"),
    (["trainer.epochs=2.5"], "trainer.epochs must be a positive integer, got 2.5"),
    (["trainer.batch_size=abc"], "trainer.batch_size must be a positive integer, got 'abc'"),
    (["optimizer.learning_rate=0"], "optimizer.learning_rate must be a positive number, got 0"),
    (["optimizer.learning_rate=-0.1"], "optimizer.learning_rate must be a positive number"),
    (["trainer.batch_size=5000"], "trainer.batch_size=5000 is larger than the training set (1000"),
    (["search.space.model.depth='int(interval(1,'"], "search.space.model.depth: cannot parse"),
    (["+search.space.model.depht='choice(1, 2)'"], "key 'model.depht' does not exist"),
    (["search.storage=notaurl"], "search.storage='notaurl' is not a URL"),
    (["search.storage=redis://127.0.0.1/0"], "search.storage: scheme 'redis' is not one of"),
    (
        ["search.storage=postgresql://sweep:hunter2@127.0.0.1:1/none"],
        "search.storage=postgresql://sweep:***@127.0.0.1:1/none is unreachable",
    ),
    (["tracking.uri=http://127.0.0.1:1"], "tracking.uri=http://127.0.0.1:1 is unreachable"),
    (["tracking.uri=ftp://example/x"], "tracking.uri: scheme 'ftp' is not one of"),
    (
        ["search/pruner=hyperband", "search.objectives=[{name:val_mse,direction:maximize}]"],
        "HyperbandPruner ranks each epoch's validation",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "message"), BAD_INPUT, ids=[b[0][0] for b in BAD_INPUT])
def test_bad_input_gets_one_line_and_writes_nothing(used_store, overrides, message):
    before = _snapshot(used_store)
    out = run_cli(
        "sweep", "experiment=tiny", "search.study_name=fresh", *overrides, store=used_store
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "hunter2" not in out.stderr + out.stdout
    assert _snapshot(used_store) == before  # refused before any trial (no timing: load varies)


def test_unwritable_store_is_refused_before_anything_is_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = run_cli("sweep", "experiment=tiny", store=blocker / "mlruns")
    assert out.returncode == 2
    assert "cannot create" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_resuming_with_a_changed_space_is_refused(used_store):
    before = _snapshot(used_store)
    out = run_cli(
        "sweep",
        "experiment=tiny",
        "search.space.model.depth='int(interval(1, 2))'",
        store=used_store,
    )
    assert out.returncode == 2
    line = out.stderr.strip().splitlines()[-1]
    assert "study 'sine-mlp' was started with a different config" in line
    assert "search.space.model.depth: int(interval(1, 6)) -> int(interval(1, 2))" in line
    assert "search.study_name=" in line
    assert _snapshot(used_store) == before


@pytest.mark.slow
def test_three_workers_on_the_embedded_store_finish_exactly(tmp_path):
    args = [
        *FAST,
        "search.n_trials=12",
        "search.space.optimizer.learning_rate='tag(log, interval(0.001, 0.05))'",
    ]
    procs = [_popen(tmp_path, *args, command="worker", merge=True) for _ in range(3)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert not any("database is locked" in o for o in outputs)
    study = _study(tmp_path)
    assert len(_finished(study)) == 12
    runs = _runs(tmp_path)
    parents = [r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("sweep.kind") == "trial"]
    assert len(parents) == 1
    assert len(children) == len([t for t in study.trials if "mlflow_run_id" in t.user_attrs]) == 12
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    ran_trials = [o for o in outputs if re.search(r"\] trial \d+ ", o)]
    assert len(ran_trials) >= 2  # the work was shared: at least two workers finished a trial
