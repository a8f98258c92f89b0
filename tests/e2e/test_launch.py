"""`python -m sweep launch --engine ray`: Ray tasks each running one worker, on a Ray head and a
PostgreSQL cluster of the test's own.

Ray advertises the machine's interface address even when told 127.0.0.1, so each test runs
itself again inside a network namespace holding only loopback (`unshare --net`), where nothing
can reach beyond 127.0.0.0/8; the head and the database are started inside and torn down by PID.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweep.core.errors import EXIT_INTERRUPTED
from sweep.core.processes import stop
from sweep.study.proxy import BEAT_ATTR
from sweep.study.study import LOST
from tests.conftest import ROOT, clean_env
from tests.e2e.test_distributed import _free_port, tree_pids
from tests.e2e.test_faults import PrivatePostgres
from tests.e2e.test_proxy import serve_proxy

INSIDE = "SWEEP_TEST_NETNS"  # set in the namespace: the test runs for real there
ARGS = [
    "experiment=tiny",
    "search.heartbeat_interval=1",
    "search.grace_period=10",
    "search/pruner=none",
    "search.space.optimizer.learning_rate='tag(log, interval(0.001, 0.01))'",
]

pytest.importorskip("ray", reason="pip install -e '.[ray]'")


def in_namespace(test: str) -> None:
    """Run `test` of this file again in a network namespace of loopback alone; its result is
    this test's. Outside it, Ray's traffic could reach the machine's own interface."""
    script = f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider "
    script += f"'{__file__}::{test}'"
    try:
        out = subprocess.run(
            ["unshare", "--net", "--", "sh", "-c", script],
            cwd=ROOT,
            env={**clean_env(), INSIDE: "1"},
            capture_output=True,
            text=True,
            timeout=900,
        )
    except FileNotFoundError:
        pytest.skip("no unshare")
    if "unshare failed" in out.stderr or "Operation not permitted" in out.stderr:
        pytest.skip(f"unshare --net is not permitted here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]


@contextlib.contextmanager
def ray_head(folder: Path) -> Iterator[str]:
    """A Ray head on 127.0.0.1 (a free port, 2 CPUs, its own temp dir); its address. Stopped
    by PID: `ray stop` would stop every Ray of the machine."""
    port = _free_port()
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block"]
    cmd += [f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
    cmd += [f"--temp-dir={folder}", "--include-dashboard=false", "--disable-usage-stats"]
    log = open(folder.parent / "ray-head.log", "w")  # noqa: SIM115 - closed below
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_port(port, head)
        yield f"127.0.0.1:{port}"
    finally:
        pids = tree_pids(head.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(2)
        head.wait()
        log.close()


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "ray start exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail("the Ray head did not listen")


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(ray address, PostgreSQL URL), inside the namespace only."""
    if not os.environ.get(INSIDE):
        pytest.skip("runs inside the test's network namespace")
    # Ray 2.60's head turns token auth on; a token of this cluster's own, never ~/.ray's.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    folder = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
    # Under /tmp, not pytest's deep tmp_path: Ray's socket paths must stay short.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp")) / "t"
    ray_tmp.mkdir()
    try:
        pg = PrivatePostgres(folder)
        try:
            with ray_head(ray_tmp) as address:
                yield address, pg.url
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                pg.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(ray_tmp.parent, ignore_errors=True)


def _launch(address: str, url: str, store: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sweep", "launch", "--address", address, *args, *ARGS]
    cmd += [f"search.storage={url}", f"paths.store={store}"]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip


def _running_with_run(url: str, proc: subprocess.Popen, n: int = 1, timeout: float = 300) -> None:
    """Block until `n` trials are RUNNING with their MLflow runs named (n workers mid-trial)."""
    storage = optuna.storages.RDBStorage(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"launch exited {proc.returncode}: {proc.stdout.read()[-4000:]}")
            with contextlib.suppress(KeyError):
                study = optuna.load_study(study_name="sine-mlp", storage=storage)
                running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                if len([t for t in running if "mlflow_run_id" in t.user_attrs]) >= n:
                    return
            time.sleep(0.2)
    finally:
        storage.engine.dispose()
    pytest.fail(f"never saw {n} trial(s) running")


def _trials(url: str) -> list:
    storage = optuna.storages.RDBStorage(url)
    try:
        return optuna.load_study(study_name="sine-mlp", storage=storage).trials
    finally:
        storage.engine.dispose()


def _ray_workers() -> list[int]:
    """PIDs of the processes running a sweep worker task (Ray titles them by the task's name)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(
                b"ray::sweep-worker"
            ):
                found.append(int(entry.name))
    return found


def _listeners_on_loopback_only() -> None:
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}
    assert addresses <= {"127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"}, addresses  # no wildcard
    ips = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert all(line.split()[1] == "lo" for line in ips.splitlines()), ips  # only loopback here


@pytest.mark.slow
def test_a_ray_worker_killed_through_the_proxy_is_replaced_and_its_trial_retried():
    in_namespace(
        "test_inside_a_ray_worker_killed_through_the_proxy_is_replaced_and_its_trial_retried"
    )


@pytest.mark.slow
def test_inside_a_ray_worker_killed_through_the_proxy_is_replaced_and_its_trial_retried(
    cluster, tmp_path
):
    """The kill through the proxy (`search.storage=grpc://...`, `sweep proxy` in front of the
    database): the heartbeat travels as a trial attribute (study/proxy.py), the path Optuna's own
    client lacks. One Ray cluster test for both kills, to keep the suite short: Ray on PostgreSQL
    directly stays covered by the cancel test below, a worker SIGKILLed on PostgreSQL directly
    (heartbeat table) by test_distributed's killed-worker test."""
    address, url = cluster
    with serve_proxy(url, tmp_path) as px:
        # Trials of a few seconds: the victim is still mid-trial when the signal lands.
        args = ("--workers", "2", "search.n_trials=4", "trainer.epochs=150")
        proc = _launch(address, px.url, tmp_path, *args)
        try:
            _running_with_run(url, proc, n=2)  # both workers mid-trial: either is a victim
            victims = _ray_workers()
            assert len(victims) == 2, victims
            # At the launcher's priority, not Ray's worker_niceness 15 (starved beside any work).
            assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in victims} == {os.nice(0)}
            os.kill(victims[0], signal.SIGKILL)
            _listeners_on_loopback_only()
            # About 30 s once the killed trial is failed by its missing beat (grace 10 s); one
            # never failed (no heartbeat through the proxy) leaves a worker waiting for ever.
            out, _ = proc.communicate(timeout=180)
        finally:
            stop(proc, grace=10)
    assert proc.returncode == 0, out
    assert f"in {px.url}: " in out, out  # the workers opened the study through the proxy
    trials = _trials(url)
    states = [t.state.name for t in trials]
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4, states
    assert all(BEAT_ATTR in t.system_attrs for t in finished)  # each beat through the proxy
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sine").experiment_id])
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    lost = [r for r in runs if r.data.tags.get("fail_reason") == LOST]
    said = [(r.info.run_name, r.info.status, r.data.tags.get("fail_reason")) for r in runs]
    assert len(lost) == 1 and lost[0].info.status == "KILLED", (said, states)
    number = int(lost[0].data.tags["sweep.trial"])
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    assert len(retried) == 1 and retried[0].state.name in ("COMPLETE", "PRUNED"), states


@pytest.mark.slow
def test_a_stopped_launch_cancels_its_tasks_and_each_gives_its_trial_back():
    in_namespace("test_inside_a_stopped_launch_cancels_its_tasks_and_each_gives_its_trial_back")


@pytest.mark.slow
def test_inside_a_stopped_launch_cancels_its_tasks_and_each_gives_its_trial_back(cluster, tmp_path):
    address, url = cluster
    proc = _launch(
        address, url, tmp_path, "--workers", "2", "search.n_trials=20", "trainer.epochs=40"
    )
    try:
        _running_with_run(url, proc)
        os.kill(proc.pid, signal.SIGTERM)  # as a scheduler stops the driver
        out, _ = proc.communicate(timeout=300)
    finally:
        stop(proc, grace=10)
    assert proc.returncode == EXIT_INTERRUPTED, out
    trials = _trials(url)
    assert not [t.number for t in trials if t.state.name == "RUNNING"]
    given = [t for t in trials if t.user_attrs.get("fail_reason") == "interrupted"]
    assert given, [(t.state.name, t.user_attrs) for t in trials]
    queued = [t for t in trials if t.state.name == "WAITING"]
    assert sorted(t.user_attrs["retry_of"] for t in queued) == sorted(t.number for t in given)


def _mlflow_state(store: Path) -> list[tuple]:
    """Every run of the store as (id, status, end, tags, metrics, artifacts), and the registry
    (metrics as text: a diverged trial's nan is not equal to itself)."""
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = [
        (r.info.run_id, r.info.status, r.info.end_time, sorted(r.data.tags.items()),
         repr(sorted(r.data.metrics.items())),
         sorted(a.path for a in client.list_artifacts(r.info.run_id)))
        for r in client.search_runs(experiments)
    ]  # fmt: skip
    versions = [(v.name, v.version) for v in client.search_model_versions()]
    return sorted(runs) + versions


def test_a_worker_joining_a_finished_study_exits_at_once(tiny_sweep_store, tmp_path, monkeypatch):
    """A replacement Ray task (or a requeued SLURM job, a restarted pod) that starts after the
    target is met: exit 0 before reopening the parent run, warming up TensorFlow or training."""
    from tests.conftest import TINY_SWEEP

    store = tmp_path / "store"
    shutil.copytree(tiny_sweep_store, store)  # the shared study stays as it is
    before, trials = _mlflow_state(store), _trials(f"sqlite:///{store}/optuna.db")

    def never(*_: object, **__: object) -> None:
        raise AssertionError("a worker on a finished study loaded TensorFlow or trained")

    monkeypatch.setattr("sweep.study.worker.warm_up", never)
    monkeypatch.setattr("sweep.run.execute", never)
    from sweep.cli.runner import main

    start = time.perf_counter()
    assert main(["worker", *TINY_SWEEP[1:], f"paths.store={store}"]) == 0
    seconds = time.perf_counter() - start
    after = _trials(f"sqlite:///{store}/optuna.db")
    assert [(t.number, t.state) for t in after] == [(t.number, t.state) for t in trials]
    assert _mlflow_state(store) == before  # no run made, the parent neither reopened nor written
    assert seconds < 10, f"{seconds:.1f} s to find nothing to do"
    print(f"a worker on a finished study: {seconds:.2f} s")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--engine", "spark", "--workers", "2"], "invalid choice: 'spark'"),
        (["--workers", "two", "experiment=tiny"], "--workers: invalid int value: 'two'"),
    ],
)
def test_launch_options_are_refused_in_one_line_before_anything_starts(argv, says, capsys):
    from sweep.cli.runner import main

    assert main(["launch", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
