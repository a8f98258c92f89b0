"""Issue 14, secrets: a password reaches no store, no file another user reads, no `ps` line.

A password arrives typed on a command line (which Hydra's `-m` hands each job escaped:
`postgresql\\://u\\:pw@h`), in MLFLOW_TRACKING_URI, or in `--storage`; each test follows it to
everywhere it could land. The servers are real (mlflow, optuna-dashboard on the PostgreSQL at
127.0.0.1:5432, trust auth: any password connects, so a fake one is enough to look for).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shlex
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hydra._internal.grammar.utils import escape_special_characters

from sweep.cli import runner
from sweep.config.stores import POSTGRES_SCHEMES, STORAGE_SCHEMES, TRACKING_SCHEMES, check_url
from sweep.core.errors import ConfigError
from sweep.core.processes import stop, without_password
from sweep.core.secrets import mask_data, mask_text, mask_url, split_password
from tests.conftest import clean_env
from tests.serve.test_serve import _descendants

PG = "127.0.0.1:5432"
# Each odd password and the pieces of it that must never show (a masker that stops at the odd
# character leaks the half after it, so both halves are looked for).
ODD = {
    "colon": ("S3c:r3t", ("S3c", "r3t")),
    "at": ("S3c@r3t", ("S3c", "r3t")),
    "slash": ("S3c/r3t", ("S3c", "r3t")),
    "single-quote": ("S3c'r3t", ("S3c", "r3t")),
    "double-quote": ('S3c"r3t', ("S3c", "r3t")),
    "space": ("S3c r3t", ("S3c", "r3t")),
    "tab": ("S3c\tr3t", ("S3c", "r3t")),
    "percent-encoded": ("S3c%40r3t", ("S3c", "r3t")),
    "backslash": ("S3c\\r3t", ("S3c", "r3t")),
    "comma": ("S3c,r3t", ("S3c", "r3t")),
    "umlauts": ("pässwörd", ("pässw", "wörd", "ä")),
    "chinese": ("密码", ("密", "码")),
}


def url_with(password: str, query: str = "") -> str:
    return f"postgresql://bob:{password}@{PG}/optuna{query}"


def leaks(text: str, fragments: tuple[str, ...]) -> list[str]:
    return [f for f in fragments if f in text]


# --------------------------------------------------------------------------- masking


def text_forms(url: str) -> dict[str, str]:
    """Every one-line way a URL is written down: typed, as `-m` hands it on, in a command."""
    escaped = f"search.storage={escape_special_characters(url)}"
    command = shlex.join(["python", "-m", "sweep", "baseline", "-m", f"search.storage={url}"])
    return {
        "url": url,
        "override": f"search.storage={url}",
        "hydra -m override": escaped,
        "job line": f"job 0: experiment=tiny {escaped} trainer.epochs=1",
        "override_dirname": f"experiment=tiny,search.storage={url},trainer.epochs=1,2",
        "shell command": command,
        "repr in an error": f"search.storage={url!r} names no host",
        "json of the command": json.dumps({"command": command}, ensure_ascii=False),
    }


@pytest.mark.parametrize("name", ODD)
def test_an_odd_password_is_masked_in_every_written_form(name):
    password, fragments = ODD[name]
    url = url_with(password)
    for form, text in text_forms(url).items():
        masked = mask_text(text)
        assert not leaks(masked, fragments), (form, masked)
        assert PG.split(":")[0] in masked, (form, masked)  # the host is still there
        assert mask_text(masked) == masked, form  # idempotent
    record = {"overrides": [f"search.storage={url}"], "search": {"storage": url}}
    for dumped in (
        yaml.safe_dump(mask_data(record), allow_unicode=True),
        json.dumps(mask_data(record), ensure_ascii=False),
    ):
        assert not leaks(dumped, fragments), dumped


@pytest.mark.parametrize("name", ["space", "tab", "comma", "backslash", "colon"])
def test_a_secret_query_value_is_masked_in_hydras_escaped_form(name):
    password, fragments = ODD[name]
    url = url_with("", f"?sslmode=require&password={password}").replace("bob:@", "bob@")
    escaped = f"search.storage={escape_special_characters(url)}"
    assert "password\\=" in escaped  # what `-m` writes: the `=` escaped
    for text in (escaped, f"job 1: {escaped} trainer.epochs=2"):
        assert not leaks(mask_text(text), fragments), mask_text(text)
    # typed raw, a query value with a space is one only as a whole value (free text cannot
    # tell it from the next word): check_url refuses it, records mask values whole
    assert not leaks(mask_url(url), fragments)
    assert not leaks(yaml.safe_dump(mask_data({"storage": url, "o": [f"k={url}"]})), fragments)


# --------------------------------------------------------------------------- refused in one line


@pytest.mark.parametrize("name", ["space", "tab"])
@pytest.mark.parametrize("schemes", [STORAGE_SCHEMES, TRACKING_SCHEMES])
def test_whitespace_in_a_url_is_refused_without_printing_the_password(name, schemes):
    password, fragments = ODD[name]
    with pytest.raises(ConfigError) as err:
        check_url("search.storage", url_with(password), schemes)
    said = str(err.value)
    assert "holds whitespace" in said and "%20" in said and "PGPASSWORD" in said
    assert "\n" not in said and not leaks(said, fragments), said


def test_a_folder_with_a_space_is_still_a_sqlite_storage(tmp_path):
    folder = tmp_path / "My Projects"
    check_url("search.storage", f"sqlite:///{folder}/optuna.db", STORAGE_SCHEMES)


def test_a_value_that_is_no_url_is_shown_without_what_precedes_its_at():
    with pytest.raises(ConfigError) as err:  # a URL that lost its `//`, or half of one
        check_url("search.storage", "postgresql:/bob:S3c:r3t@db/optuna", STORAGE_SCHEMES)
    assert "S3c" not in str(err.value) and "@db/optuna" in str(err.value)


@pytest.mark.parametrize(
    "scheme", ["postgresql", "postgresql+psycopg", "postgresql+psycopg2", "mysql+pymysql"]
)
def test_every_driver_scheme_gets_the_network_url_checks(scheme):
    if scheme.startswith("postgresql"):
        check_url("tracking.uri", f"{scheme}://bob@db/mlflow", TRACKING_SCHEMES)
    check_url("search.storage", f"{scheme}://bob@db/optuna", STORAGE_SCHEMES)
    with pytest.raises(ConfigError, match="names no host"):
        check_url("search.storage", f"{scheme}:///optuna", STORAGE_SCHEMES)
    with pytest.raises(ConfigError, match="holds whitespace"):
        check_url("search.storage", f"{scheme}://bob:a b@db/optuna", STORAGE_SCHEMES)


def test_postgresql_psycopg_urls_pass_the_config_check(compose_cfg):
    from sweep.config.checks import prepare

    url = f"postgresql+psycopg://postgres@{PG}/test"
    cfg = prepare(compose_cfg(f"search.storage={url}", f"tracking.uri={url}"))
    assert cfg.search.storage == url and cfg.tracking.uri == url
    assert "postgresql+psycopg" in POSTGRES_SCHEMES
    assert split_password(f"postgresql+psycopg://bob:p%40ss@{PG}/x") == (
        f"postgresql+psycopg://bob@{PG}/x",
        "p@ss",
    )


# --------------------------------------------------------------------------- Hydra's multirun

# typed value (quoted where Hydra's grammar needs it) -> exit code: 0 ran, 2 refused in one line
TRAINS = [
    ("colon", "", 0),
    ("at", "", 0),
    ("percent-encoded", "", 0),
    ("backslash", "", 0),
    ("single-quote", '"', 0),
    ("double-quote", "'", 0),
    ("comma", "'", 0),
    ("umlauts", "'", 0),
    ("chinese", "'", 0),
]
REFUSED = [
    ("slash", "", 2),  # check_url: percent-encode it
    ("space", "", 2),  # check_url: whitespace
    ("tab", "", 2),
    ("comma", "", 2),  # Hydra would split it into a sweep of two halves
    ("single-quote", "", 2),  # Hydra's grammar: an unquoted quote or non-ASCII letter
    ("double-quote", "", 2),
    ("umlauts", "", 2),
    ("chinese", "", 2),
]
MULTIRUN = [pytest.param(*case, marks=pytest.mark.slow) for case in TRAINS] + REFUSED
FAST_BASELINE = (
    "experiment=tiny",
    "trainer.epochs=1",
    "tracking.log_model=false",
    "tracking.log_plots=false",
    "hydra.output_subdir=.hydra",  # Hydra's .hydra/config.yaml, hydra.yaml, overrides.yaml too
)


def everything_under(folder: Path) -> str:
    """Every file's bytes (the MLflow database and its WAL, artifacts, Hydra's files) as text."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in files)


def multirun_ids() -> list[str]:
    cases = TRAINS + REFUSED
    return [f"{name}-{'quoted' if quote else 'typed'}-exit{code}" for name, quote, code in cases]


@pytest.mark.parametrize(("name", "quote", "code"), MULTIRUN, ids=multirun_ids())
def test_a_multirun_leaves_an_odd_password_nowhere(name, quote, code, tmp_path, capsys):
    """Refused in one line, or run (one epoch, in-process) with the password masked in the job
    line, the run's params, config.yaml, overrides.txt, replay.json and Hydra's own files."""
    password, fragments = ODD[name]
    typed = f"search.storage={quote}{url_with(password)}{quote}"
    argv = ["baseline", "-m", *FAST_BASELINE, f"paths.store={tmp_path}", typed]
    assert runner.main(argv) == code
    out, err = capsys.readouterr()
    assert not leaks(out + err, fragments), out + err
    assert not leaks(everything_under(tmp_path), fragments)
    if code:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    else:
        assert "job 0: " in out and f"***@{PG.split(':')[0]}" in out
        assert (tmp_path / "mlflow.db").is_file()  # the store the grep read is the run's
    for written in tmp_path.glob("multirun/*/multirun.yaml"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert "bob:***@" in written.read_text(encoding="utf-8")  # what the grep looked at


def test_hydras_files_are_private_even_before_a_job_masks_them(tmp_path, capsys):
    """A grid Hydra refuses after writing multirun.yaml (an option of its second job is not
    there) runs no job to mask it: it keeps the password, so only its owner may read it."""
    typed = f"search.storage={url_with('S3c:r3t')}"
    argv = ["baseline", "-m", f"paths.store={tmp_path}", typed, "optimizer=sgd,adagrad"]
    caller = os.umask(0o022)
    try:
        assert runner.main(argv) == 2
        assert os.umask(caller) == 0o022  # the runner put the caller's umask back
    finally:
        os.umask(caller)
    assert "adagrad" in capsys.readouterr().err
    assert list(tmp_path.glob("multirun/*/multirun.yaml"))
    for path in tmp_path.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path}: {oct(mode)}"


# --------------------------------------------------------------------------- child command lines


def test_the_password_leaves_the_url_for_pgpassword():
    assert without_password(url_with("S3c:r3t")) == (
        f"postgresql://bob@{PG}/optuna",
        {"PGPASSWORD": "S3c:r3t"},
    )
    assert without_password(url_with("S3c%40r3t"))[1] == {"PGPASSWORD": "S3c@r3t"}
    assert without_password("sqlite:////tmp/o.db") == ("sqlite:////tmp/o.db", {})


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bob@{PG}/optuna?sslmode=require&password=S3cr3t",
        "mysql+pymysql://bob:S3cr3t@db/optuna",
    ],
)
def test_a_password_no_variable_can_carry_is_refused_for_a_child(url):
    with pytest.raises(ConfigError, match="command line") as err:
        without_password(url)
    assert "S3cr3t" not in str(err.value)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_libpq_sends_pgpassword_for_the_url_without_one(driver, monkeypatch):
    """What the children rely on: the URL on their command line has no password, and libpq
    (under psycopg 3 and psycopg2 alike, hence SQLAlchemy, MLflow, Optuna) takes PGPASSWORD."""
    import sqlalchemy

    bare, env = without_password(f"postgresql+{driver}://postgres:S3c:r3t@{PG}/test")
    monkeypatch.setenv("PGPASSWORD", env["PGPASSWORD"])
    engine = sqlalchemy.create_engine(bare)
    try:
        with engine.connect() as con:
            assert con.connection.dbapi_connection.info.password == "S3c:r3t"
    except sqlalchemy.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on {PG}: {exc.orig}")
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def databases() -> Iterator[dict[str, str]]:
    """Two throwaway databases (an MLflow store, an Optuna storage), dropped afterwards."""
    import psycopg2

    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL on {PG}: {exc}")
    admin.autocommit = True
    name = f"sweep_secrets_{secrets.token_hex(4)}"
    names = {kind: f"{name}_{kind}" for kind in ("mlflow", "optuna")}
    with admin.cursor() as cur:
        for db in names.values():
            cur.execute(f"CREATE DATABASE {db}")
    try:
        yield names
    finally:
        with admin.cursor() as cur:
            for db in names.values():
                cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(args: list[str], tmp_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`python -m sweep <args>` until it says it is up (Ctrl-C to stop); stopped afterwards."""
    log = tmp_path / "out.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweep", *args],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        yield proc
    finally:
        stop(proc)
    assert "Traceback" not in log.read_text(), log.read_text()


def command_lines(root: int) -> list[str]:
    """The command lines of every process `root` started (their own groups included), as every
    local user reads them in /proc/PID/cmdline."""
    lines = []
    for pid in _descendants(root):
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines


def status_of(url: str) -> int:
    """GET's status, straight to the server (no HTTP(S)_PROXY of the environment)."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as resp:
        return resp.status


FAKE = "f4ke-S3cr3t"
# How the URL reaches the command: (arguments, environment variable). `ui --tracking-uri URL`
# is the user's own command line; what it starts is what every local user can read.
SERVED = {
    "ui --tracking-uri": (["ui", "--tracking-uri", "{url}"], None),
    "ui MLFLOW_TRACKING_URI": (["ui"], "MLFLOW_TRACKING_URI"),
    "server SWEEP_TRACKING_DB": (["server", "--workers", "1"], "SWEEP_TRACKING_DB"),
}


@pytest.mark.slow
@pytest.mark.parametrize("how", SERVED)
def test_no_server_shows_the_database_password_on_its_command_line(how, databases, tmp_path):
    url = f"postgresql://postgres:{FAKE}@{PG}/{databases['mlflow']}"
    port, env = free_port(), clean_env()
    args, variable = SERVED[how]
    if variable:
        env[variable] = url
    args = [a.format(url=url) for a in args] + ["--port", str(port)]
    with serving(args, tmp_path, env) as proc:
        lines = command_lines(proc.pid)
        assert status_of(f"http://127.0.0.1:{port}/health") == 200  # up, on PGPASSWORD's word
    assert any("--backend-store-uri" in line for line in lines), lines  # mlflow's was read
    assert any(f"postgres@{PG}" in line for line in lines), lines
    assert not [line for line in lines if FAKE in line]
    assert FAKE not in (tmp_path / "out.log").read_text()


# --------------------------------------------------------------------------- the dashboard's Host


def http_request(port: int, method: str, path: str, host: str, **headers: str) -> tuple[int, bytes]:
    """One real HTTP request to 127.0.0.1:port with the Host header a browser would send."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"version": 1, "body": "written by a forged request"})
    try:
        con.putrequest(method, path, skip_host=True)
        con.putheader("Host", host)
        for key, value in headers.items():
            con.putheader(key.replace("_", "-"), value)
        if method == "PUT":
            con.putheader("Content-Type", "application/json")
            con.putheader("Content-Length", str(len(body)))
        con.endheaders(body.encode() if method == "PUT" else None)
        resp = con.getresponse()
        return resp.status, resp.read()
    finally:
        con.close()


def notes(storage: str) -> dict:
    """optuna-dashboard's notes on study `s` (its system attributes `dashboard:*`)."""
    import optuna

    rdb = optuna.storages.RDBStorage(storage)
    try:
        attrs = rdb.get_study_system_attrs(rdb.get_study_id_from_name("s"))
    finally:
        rdb.engine.dispose()
    return {k: v for k, v in attrs.items() if k.startswith("dashboard:")}


def note_path(storage: str) -> str:
    """Where optuna-dashboard's page writes study `s`'s note."""
    import optuna

    rdb = optuna.storages.RDBStorage(storage)
    try:
        return f"/api/studies/{rdb.get_study_id_from_name('s')}/note"
    finally:
        rdb.engine.dispose()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """The dashboard app (behind its Host check) on a real study, served in a thread."""
    import optuna
    from optuna_dashboard import wsgi

    from sweep.serve.dashboard_app import host_check, server

    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    port = free_port()
    httpd = server(host_check(wsgi(storage), "127.0.0.1", port), "127.0.0.1", port)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, storage
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("evil.example:{port}", None),  # a page whose name rebinds to 127.0.0.1
        ("evil.example", None),
        ("127.0.0.1:1", None),  # another port's name
        ("", None),
        ("127.0.0.1:{port}", "http://evil.example"),  # a cross-site form post
    ],
)
def test_the_dashboard_refuses_a_request_for_another_name_and_writes_nothing(
    dashboard, host, origin
):
    port, storage = dashboard
    headers = {"Origin": origin} if origin else {}
    host = host.format(port=port)
    assert http_request(port, "GET", "/api/studies", host, **headers)[0] == 403
    assert http_request(port, "PUT", note_path(storage), host, **headers)[0] == 403
    assert notes(storage) == {}


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_the_dashboard_answers_its_own_names(dashboard, host):
    port, storage = dashboard
    host = host.format(port=port)
    status, body = http_request(port, "GET", "/api/studies", host)
    assert status == 200 and json.loads(body)["study_summaries"][0]["study_name"] == "s"
    origin = f"http://{host}"
    assert http_request(port, "PUT", note_path(storage), host, Origin=origin)[0] == 204
    assert notes(storage)  # the request the forged Host sent in vain does write, here


def test_a_wildcard_bind_also_answers_ip_literals_but_not_names():
    from sweep.serve.dashboard_app import allowed_hosts, trusted

    allowed = allowed_hosts("0.0.0.0", 8080)
    assert trusted("10.1.2.3:8080", allowed, 8080) and trusted("[fe80::1]:8080", allowed, 8080)
    assert not trusted("10.1.2.3:9999", allowed, 8080)
    assert not trusted("dashboard.lab:8080", allowed, 8080)
    assert not trusted("10.1.2.3:8080", allowed_hosts("127.0.0.1", 8080), None)


@pytest.mark.slow
def test_sweep_dashboard_hides_the_password_and_checks_the_host(databases, tmp_path):
    import optuna

    url = f"postgresql://postgres:{FAKE}@{PG}/{databases['optuna']}"
    optuna.create_study(study_name="s", storage=url)
    port = free_port()
    (tmp_path / "mlflow.db").touch()  # `dashboard` wants an MLflow store beside the study
    args = ["dashboard", "--storage", url, "--store", str(tmp_path), "--port", str(port)]
    with serving(args, tmp_path, clean_env()) as proc:
        lines = command_lines(proc.pid)
        assert http_request(port, "PUT", note_path(url), f"evil.example:{port}")[0] == 403
        assert http_request(port, "GET", "/api/studies", f"localhost:{port}")[0] == 200
    assert any("sweep.serve.dashboard_app" in line for line in lines), lines
    assert any(f"postgres@{PG}" in line for line in lines), lines
    assert not [line for line in lines if FAKE in line]
    assert notes(url) == {}
    assert FAKE not in (tmp_path / "out.log").read_text()
