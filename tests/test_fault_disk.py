"""The disk filling up while artifacts are written (docs/faults.md, "Service faults").

The disk is real: a small tmpfs each test mounts (we run as root in CI's container) and fills
with a ballast file until writes fail with ENOSPC; deleting the ballast is "space is back".
Nothing is mocked: MLflow, Optuna and SQLite meet the full disk themselves.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweep.errors import NO_SPACE, no_space
from sweep.tracking import Tracker, tracked_run, write_in_background


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
