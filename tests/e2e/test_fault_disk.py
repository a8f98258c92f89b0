"""The disk filling up while artifacts are written (docs/faults.md, "Service faults").

The disk is real: a small tmpfs each test mounts (we run as root in CI's container) and fills
with a ballast file until writes fail with ENOSPC; deleting the ballast is "space is back".
Nothing is mocked: MLflow, Optuna and SQLite meet the full disk themselves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweep.core.errors import NO_SPACE, no_space
from sweep.tracking import Tracker, tracked_run, write_in_background
from tests.conftest import ROOT, clean_env, run_cli
from tests.e2e.test_reliability import FAST, _popen, _study, _wait_for_running_trial

# Trials of ~2-3 s (no pruning), so the disk fills while trial 1 trains. Whether trial 0's plots
# were still on the background writer then is a race: the fast test below pins that case.
ARGS = [*FAST, "search.n_trials=4", "trainer.epochs=200", "search/pruner=none"]
RECORD = {"config.yaml", "overrides.txt", "replay.json", "plots/loss.png", "plots/prediction.png"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MB tmpfs of this test's own, unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(where)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)  # a straggler holds a file


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk refuses even 4 KB (one tmpfs page); returns it."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    chunk = 1 << 20
    try:
        while True:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if chunk == 4096:
                    return ballast
                chunk //= 16
    finally:
        os.close(fd)


def until_full(write: Callable[[], object], attempts: int = 5000) -> BaseException:
    """Repeat `write` until the full disk stops it (a SQLite WAL may have room for a while)."""
    for _ in range(attempts):
        try:
            write()
        except Exception as exc:
            return exc
    raise AssertionError(f"{attempts} writes on a full disk all succeeded")


def test_a_background_artifact_on_a_full_disk_fails_its_own_run_not_the_next(tmp_path, small_disk):
    """A plot written on the worker's background thread: the run it belongs to fails with the
    reason, before it closes; the next run, with space back, is not blamed for it."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "disk", str(small_disk / "artifacts"))
    tracker.setup()
    png = b"\x89PNG" + b"\0" * 100_000
    write_in_background(True)
    try:
        ballast = fill(small_disk)
        with pytest.raises(OSError), tracked_run(tracker, "full") as full:
            full.defer(lambda: full.log_bytes(png, "plots/loss.png"), "plots")
        ballast.unlink()
        with tracked_run(tracker, "room") as room:
            room.defer(lambda: room.log_bytes(png, "plots/loss.png"), "plots")
    finally:
        write_in_background(False)
    client = MlflowClient(uri)
    failed, finished = client.get_run(full.run_id), client.get_run(room.run_id)
    assert failed.info.status == "FAILED"
    why = failed.data.tags["fail_reason"]
    assert why.startswith(f"{NO_SPACE} writing ") and why.endswith("plots/loss.png"), why
    assert finished.info.status == "FINISHED" and "fail_reason" not in finished.data.tags
    assert [a.path for a in client.list_artifacts(room.run_id, "plots")] == ["plots/loss.png"]


@pytest.mark.parametrize("store", ["mlflow", "optuna"])
def test_a_sqlite_store_that_cannot_grow_is_named_a_full_disk(small_disk, store):
    """MLflow and Optuna wrap SQLite's "database or disk is full" in their own errors."""
    url = f"sqlite:///{small_disk}/{store}.db"
    if store == "mlflow":
        client = MlflowClient(url)
        run_id = client.create_run(client.create_experiment("disk")).info.run_id
        keys = iter(range(10**6))  # new rows: the database must grow
        fill(small_disk)
        exc = until_full(lambda: client.set_tag(run_id, f"filler{next(keys)}", "x" * 5000))
    else:
        study = optuna.create_study(storage=url)
        fill(small_disk)
        exc = until_full(lambda: study.enqueue_trial({}, user_attrs={"filler": "x" * 5000}))
    assert no_space(exc) == f"{NO_SPACE} writing a SQLite store (database or disk is full)"


def _mode_args(mode: str, local: Path, disk: Path) -> tuple[Path, list[str]]:
    """The store folder and extra overrides: only the artifacts on the small disk, or all."""
    if mode == "artifacts":
        return local, [f"tracking.artifact_root={disk}/artifacts"]
    return disk, []


def _runs(store: Path) -> list:
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    return client.search_runs([client.get_experiment_by_name("sine").experiment_id])


def _record(client: MlflowClient, run: object) -> set[str]:
    """The files a run's record holds: its artifacts and, if it kept one (its `model.keras`,
    or a full MLflow model for a registered one), `model`."""
    root = Path(run.info.artifact_uri.removeprefix("file://"))
    names = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.stat().st_size}
    if "model.keras" in names:
        names.add("model")
    models = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    for model in models:
        keras = Path(model.artifact_location.removeprefix("file://")) / "data" / "model.keras"
        if model.status == "READY" and keras.is_file() and keras.stat().st_size:
            names.add("model")
    return names


def _integrity(store: Path) -> list[str]:
    """SQLite's own check of both databases: ['ok', 'ok'] when neither is damaged."""
    checks = []
    for name in ("optuna.db", "mlflow.db"):
        with contextlib.closing(sqlite3.connect(store / name)) as con:
            checks.append(con.execute("PRAGMA integrity_check").fetchone()[0])
    return checks


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["artifacts", "store"])
def test_a_disk_filling_up_mid_sweep_stops_it_in_one_line_and_the_same_command_resumes(
    tmp_path, small_disk, mode
):
    """The disk fills while trial 1 trains. `artifacts`: only `tracking.artifact_root` is on it;
    `store`: both SQLite databases too, so they cannot grow either."""
    local = tmp_path / "local"
    store, extra = _mode_args(mode, local, small_disk)
    proc = _popen(store, *ARGS, *extra)
    try:
        number = _wait_for_running_trial(store, after=1)
        ballast = fill(small_disk)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line, no traceback
    assert f"trial {number}: {NO_SPACE} writing " in err and "run the same command" in err, err
    assert _integrity(store) == ["ok", "ok"]
    study = _study(store)
    trial = study.trials[number]
    runs = {r.info.run_id: r for r in _runs(store)}
    print(f"{mode}: {err.strip()}; trial {number} {trial.state.name}")
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    for t in study.trials:  # nothing partial counts as finished: trial 0 has its whole record
        if t.state.name in ("COMPLETE", "PRUNED"):
            assert _record(client, runs[t.user_attrs["mlflow_run_id"]]) >= RECORD | {"model"}
    if mode == "artifacts":  # the databases had room: the failure is recorded where it belongs
        assert trial.state.name == "FAIL"
        assert trial.user_attrs["fail_reason"].startswith(f"{NO_SPACE} writing {small_disk}")
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FAILED"
        assert run.data.tags["fail_reason"] == trial.user_attrs["fail_reason"]
        assert not [r for r in runs.values() if r.info.status == "RUNNING"]
        (queued,) = [t for t in study.trials if t.state.name == "WAITING"]
        assert queued.user_attrs["retry_of"] == number
        assert queued.system_attrs["fixed_params"] == trial.params  # where Optuna queues them
    else:  # what SQLite could not write is not there: the trial may still read RUNNING
        assert trial.state.name in ("FAIL", "RUNNING")

    ballast.unlink()  # space is back: the same command continues
    again = subprocess.run(
        proc.args, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert _integrity(store) == ["ok", "ok"]
    study = _study(store)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]
    retried = [t for t in finished if t.number > number and t.params == trial.params]
    assert retried, "the trial the full disk failed is tried again"
    runs = {r.info.run_id: r for r in _runs(store)}
    assert not [r.info.run_name for r in runs.values() if r.info.status == "RUNNING"]
    parents = [r for r in runs.values() if r.data.tags.get("sweep.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    for t in finished:
        assert _record(client, runs[t.user_attrs["mlflow_run_id"]]) >= RECORD | {"model"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["artifacts", "store"])
def test_a_sweep_started_on_a_full_disk_is_one_line_and_leaves_a_study_that_resumes(
    tmp_path, small_disk, mode
):
    """A fresh study on a disk already full: its first writes fail (MLflow's or Optuna's SQLite,
    or the parent run's config.yaml); once there is room the same command makes one study."""
    store, extra = _mode_args(mode, tmp_path / "local", small_disk)
    args = ["sweep", *FAST, "search.n_trials=2", "trainer.epochs=20", *extra]
    ballast = fill(small_disk)
    out = run_cli(*args, store=store)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.startswith(f"error: {NO_SPACE} writing "), out.stderr
    assert out.stderr.count("\n") == 1 and "run the same command again" in out.stderr
    ballast.unlink()
    out = run_cli(*args, store=store)
    assert out.returncode == 0, out.stdout + out.stderr
    finished = [t for t in _study(store).trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 2
    runs = _runs(store)
    assert [r.info.status for r in runs if r.data.tags.get("sweep.kind") == "sweep"] == ["FINISHED"]
    assert not [r for r in runs if r.info.status == "RUNNING"]
