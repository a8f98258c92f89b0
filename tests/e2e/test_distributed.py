"""Beyond one machine: workers on a PostgreSQL study logging to a real `mlflow server`.

Each test makes its own role (with a password, to check it is masked everywhere) and databases on
the PostgreSQL at 127.0.0.1:5432, starts `python -m sweep server` on a free port and drops it all
afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweep.core.processes import stop
from tests.conftest import ROOT, clean_env, sweep_cmd

PG_HOST, PG_PORT = "127.0.0.1", 5432
N_TRIALS = 6
# Trials long enough that the worker killed once all are busy is still inside its trial; a grace
# period a live trial survives on a loaded 2-core machine (a starved heartbeat thread lags).
FAST = [
    "experiment=tiny",
    f"search.n_trials={N_TRIALS}",
    "trainer.epochs=40",
    "search.heartbeat_interval=1",
    "search.grace_period=10",
]


def _admin():  # noqa: ANN202 - a psycopg2 connection
    """An autocommit superuser connection to the `test` database (trust auth)."""
    import psycopg2

    errors = []
    for user in ("postgres", "root"):
        try:
            con = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="test")
        except psycopg2.OperationalError as exc:
            errors.append(str(exc).strip())
            continue
        con.autocommit = True
        return con
    message = f"no PostgreSQL on {PG_HOST}:{PG_PORT}: {errors[-1]}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def scratch_database(prefix: str, scheme: str = "postgresql") -> Iterator[str]:
    """A database of the caller's own on the shared PostgreSQL (trust auth), as a URL; dropped
    after, with whatever connections a killed worker left on it."""
    con = _admin()
    name = f"{prefix}_{secrets.token_hex(4)}"
    with con.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{scheme}://{con.info.user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with con.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        con.close()


@dataclass
class Postgres:
    """A throwaway role with a password and its databases."""

    role: str
    password: str

    def url(self, db: str) -> str:
        return f"postgresql://{self.role}:{self.password}@{PG_HOST}:{PG_PORT}/{self.role}_{db}"


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    """Role `sweep_t_<hex>` with databases `<role>_optuna` and `<role>_mlflow`, dropped after."""
    con = _admin()
    pg = Postgres(f"sweep_t_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}")
    with con.cursor() as cur:
        cur.execute(f"CREATE ROLE {pg.role} LOGIN PASSWORD %s", (pg.password,))
        for db in ("optuna", "mlflow"):
            cur.execute(f"CREATE DATABASE {pg.role}_{db} OWNER {pg.role}")
    try:
        yield pg
    finally:
        with con.cursor() as cur:
            for db in ("optuna", "mlflow"):
                cur.execute(f"DROP DATABASE IF EXISTS {pg.role}_{db} WITH (FORCE)")
            cur.execute(f"DROP ROLE IF EXISTS {pg.role}")
        con.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path
    artifacts: Path


def start_server(db_url: str, port: int, folder: Path) -> Server:
    """`python -m sweep server` on `port` over `db_url`, serving (test_faults restarts it)."""
    folder.mkdir(parents=True, exist_ok=True)
    artifacts, log = folder / "artifacts", folder / "server.log"
    env = {**clean_env(), "SWEEP_TRACKING_DB": db_url}
    cmd = [sys.executable, "-m", "sweep", "server", "--port", str(port), "--workers", "2"]
    cmd += ["--artifacts-destination", str(artifacts)]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 240
    while "serving on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, grace=5)
            pytest.fail(log.read_text())
        time.sleep(0.5)
    return Server(proc, f"http://127.0.0.1:{port}", log, artifacts)


@pytest.fixture(scope="module")
def server(pg: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python -m sweep server` on a free port, backed by the role's mlflow database."""
    srv = start_server(pg.url("mlflow"), _free_port(), tmp_path_factory.mktemp("server"))
    try:
        yield srv
    finally:
        stop(srv.proc, grace=30)
    assert srv.proc.returncode == 0, srv.log.read_text()


def _tree_cmdlines(root: int) -> list[str]:
    """Command lines of a process and all its descendants (the server and its uvicorn workers)."""
    lines = []
    for pid in tree_pids(root):
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "))
    return [line.decode(errors="replace") for line in lines]


def tree_pids(root: int) -> set[int]:
    """A process and all its descendants, whatever their sessions (mlflow starts its own)."""
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        parents[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def _worker(tmp_path: Path, i: int, args: list[str], env: dict | None = None) -> subprocess.Popen:
    """`python -m sweep worker ...` as one machine would run it, with its own local folder."""
    log = open(tmp_path / f"worker{i}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", "worker", *FAST, *args, f"paths.store={tmp_path}/w{i}"],
        cwd=ROOT,
        env=env or clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_all_busy(
    storage: str, n: int, procs: list, timeout: float = 240, study_name: str = "sine-mlp"
) -> None:
    """Block until n trials run at once with their MLflow runs open: every worker is mid-trial."""
    rdb = optuna.storages.RDBStorage(storage)  # one pool: a storage per poll would leak them
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), "a worker ended before all were busy"
            try:
                trials = optuna.load_study(study_name=study_name, storage=rdb).trials
            except KeyError:  # not created yet
                trials = []
            running = [t for t in trials if t.state.name == "RUNNING"]
            if len([t for t in running if "mlflow_run_id" in t.user_attrs]) >= n:
                return
            time.sleep(0.2)
    finally:
        rdb.engine.dispose()
    pytest.fail(f"never saw {n} trials running at once")


@pytest.mark.slow
def test_three_workers_on_postgres_and_a_server_survive_a_killed_worker(pg, server, tmp_path):
    storage = pg.url("optuna")
    common = [f"search.storage={storage}", f"tracking.uri={server.url}"]
    shared_env = {**clean_env(), "SWEEP_STORAGE": storage, "MLFLOW_TRACKING_URI": server.url}
    procs = [
        _worker(tmp_path, 0, common),
        _worker(tmp_path, 1, common),
        # The third joins through the config options a cluster job would use.
        _worker(tmp_path, 2, ["search=shared", "tracking=server"], env=shared_env),
    ]
    try:
        _wait_all_busy(storage, 3, procs)
        killed_at = time.time()
        os.kill(procs[0].pid, signal.SIGKILL)  # a machine lost mid-trial
        for p in procs[1:]:
            p.wait(timeout=240)
    finally:
        for p in procs:
            stop(p, grace=5)
    logs = {i: (tmp_path / f"worker{i}.log").read_text() for i in range(3)}
    assert procs[0].returncode == -signal.SIGKILL
    for i in (1, 2):
        assert procs[i].returncode == 0, logs[i]

    # Exactly the target, the lost trial failed by heartbeat and its parameters tried again.
    rdb = optuna.storages.RDBStorage(storage)
    study = optuna.load_study(study_name="sine-mlp", storage=rdb)
    trials, attrs = study.trials, study.user_attrs
    rdb.engine.dispose()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == N_TRIALS, states
    assert "RUNNING" not in states
    client = MlflowClient(server.url)
    failed = [t for t in trials if t.state.name == "FAIL"]
    # Two workers that ask at the same moment for the one free slot: one gives its trial back.
    surplus = [t for t in failed if t.user_attrs.get("fail_reason", "").startswith("surplus")]
    ran = [t for t in failed if t not in surplus]
    assert all("mlflow_run_id" in t.user_attrs for t in ran), [
        (t.number, t.user_attrs) for t in ran
    ]
    lost = [
        t
        for t in ran
        if "heartbeat"
        in client.get_run(t.user_attrs["mlflow_run_id"]).data.tags.get("fail_reason", "")
    ]
    assert len(lost) == 1, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert lost[0].datetime_complete.timestamp() - killed_at < 60
    assert any(t.params == lost[0].params for t in trials if t.number > lost[0].number)

    # One parent run, whichever worker created the study; every trial's run is its child.
    exp = client.get_experiment_by_name("sine")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    assert attrs["mlflow_parent_run_id"] == parent.info.run_id
    assert parent.info.status == "FINISHED"
    children = {r.info.run_id: r for r in runs if r.data.tags.get("sweep.kind") == "trial"}
    with_runs = [t for t in trials if "mlflow_run_id" in t.user_attrs]
    assert set(children) == {t.user_attrs["mlflow_run_id"] for t in with_runs}
    for run in children.values():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status in ("FINISHED", "KILLED", "FAILED")
    assert client.get_run(lost[0].user_attrs["mlflow_run_id"]).info.status == "KILLED"

    # Artifacts went through the server's proxy into its destination and come back through it.
    done = next(t for t in trials if t.state.name == "COMPLETE")
    run_id = done.user_attrs["mlflow_run_id"]
    assert children[run_id].info.artifact_uri.startswith("mlflow-artifacts:")
    png = Path(client.download_artifacts(run_id, "plots/loss.png", str(tmp_path / "dl")))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path / "dl")))
    assert f"{pg.role}:***@" in config.read_text()
    assert list(server.artifacts.rglob("loss.png"))

    # The password is nowhere: params, tags, artifacts, console output, process command lines.
    texts = [server.log.read_text(), *logs.values()]
    for run in runs:
        texts += [*run.data.params.values(), *run.data.tags.values()]
    texts += [p.read_text(errors="replace") for p in server.artifacts.rglob("*") if p.is_file()]
    leaks = [t[:200] for t in texts if pg.password in t]
    assert not leaks
    assert any(f"{pg.role}:***@" in t for t in logs.values())
    assert children[run_id].data.params["search.storage"] == storage.replace(pg.password, "***")


@pytest.mark.slow
def test_server_keeps_the_password_off_command_lines_and_hosts_checked(pg, server):
    import requests

    cmdlines = _tree_cmdlines(server.proc.pid)
    assert any("mlflow" in c and "server" in c for c in cmdlines), cmdlines
    assert not [c for c in cmdlines if pg.password in c]
    assert all("--allowed-hosts" not in c and "--disable-security" not in c for c in cmdlines)
    api = f"{server.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=sine"
    assert requests.get(api, timeout=10).json()["experiment"]["name"] == "sine"
    # MLflow's DNS-rebinding guard: a foreign Host header is refused, the local one accepted.
    assert requests.get(api, headers={"Host": "evil.example.com"}, timeout=10).status_code == 403


def test_server_refuses_to_switch_protections_off(tmp_path):
    out = sweep_cmd(
        "server",
        "--backend-store-uri",
        "sqlite:///x.db",
        "--allowed-hosts",
        "*",
        "--artifacts-destination",
        str(tmp_path / "a"),
        timeout=60,
    )
    assert out.returncode == 2
    assert "--allowed-hosts '*'" in out.stderr and "Traceback" not in out.stderr


def test_server_without_a_database_says_how_to_make_one(tmp_path):
    env = {k: v for k, v in clean_env().items() if k != "SWEEP_TRACKING_DB"}
    out = sweep_cmd("server", env=env, timeout=60)
    assert out.returncode == 2
    assert "createdb" in out.stderr and "SWEEP_TRACKING_DB" in out.stderr


@pytest.mark.slow
def test_server_on_a_missing_database_fails_in_one_masked_line(pg, tmp_path):
    url = pg.url("mlflow").replace("_mlflow", "_absent")
    out = sweep_cmd(
        "server",
        "--port",
        str(_free_port()),
        "--artifacts-destination",
        str(tmp_path / "a"),
        env={**clean_env(), "SWEEP_TRACKING_DB": url},
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "does not exist" in out.stderr and "createdb" in out.stderr
    assert pg.password not in out.stdout + out.stderr and f"{pg.role}:***@" in out.stderr
    assert "Traceback" not in out.stderr


def test_extra_allowed_hosts_keep_mlflows_local_and_private_defaults():
    from sweep.serve.server import Exposure, server_args

    cmd = server_args("sqlite://", "/tmp/a", Exposure(allowed_hosts="mlflow.lab:5000"))
    hosts = cmd[cmd.index("--allowed-hosts") + 1].split(",")
    assert {"mlflow.lab:5000", "localhost:*", "127.0.0.1:*", "10.*"} <= set(hosts)
    assert "*" not in hosts and "--disable-security-middleware" not in cmd
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"


def _database_text(url: str) -> str:
    """Every row of every table of a database, as text: what anyone with the role can read."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(url.split("?", 1)[0])) as con, con.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [row[0] for row in cur.fetchall()]
        text = []
        for table in tables:
            cur.execute(f'SELECT t::text FROM "{table}" t')
            text += [row[0] for row in cur.fetchall()]
    return "\n".join(text)


@pytest.mark.slow
def test_a_password_with_colon_quote_and_query_reaches_no_output_and_no_store(pg, tmp_path):
    """The slip and the attacker both look here: every line printed, both stores, every file."""
    secret, query_secret = f"p:w'{secrets.token_hex(4)}", f"q{secrets.token_hex(6)}"
    storage = (
        f"postgresql://{pg.role}:{secret}@{PG_HOST}:{PG_PORT}/{pg.role}_optuna"
        f"?password={query_secret}"  # trust auth: libpq sends both, the server needs neither
    )
    store = tmp_path / "store"
    env = {**clean_env(), "SWEEP_STORAGE": storage}  # the documented way: no password typed
    # its own study: the module's other tests left theirs in this database
    args = ("experiment=tiny", "search.n_trials=3", "search.study_name=pw", f"paths.store={store}")
    out = sweep_cmd("sweep", "search=shared", *args, env=env)
    assert out.returncode == 0, out.stderr
    # Hydra's grammar takes no quote and no second '=' unquoted on a command line
    typed = f"postgresql://{pg.role}:{secret.replace(chr(39), '')}@{PG_HOST}/{pg.role}_optuna"
    typo = sweep_cmd("sweep", f"search.storag={typed}", f"paths.store={store}")  # Hydra's hint
    assert typo.returncode == 2 and "+search.storag=" in typo.stderr, typo.stderr
    printed = out.stdout + out.stderr + typo.stdout + typo.stderr
    files = "".join(
        p.read_bytes().decode("latin-1") for p in store.rglob("*") if p.is_file()
    )  # the MLflow database (and its WAL), every artifact: configs, records, models, plots
    study_db = _database_text(storage)
    assert "sweep-pw" in files and "pw" in study_db  # the grep looked where it should
    for word in (secret, query_secret, secret.split(":")[1], secret.split("'")[1]):
        for where, text in (("output", printed), ("MLflow store", files), ("study", study_db)):
            assert word not in text, f"{word!r} in the {where}"
