"""Text from a shared store is shown, never obeyed: no markup in the report, no terminal escape.

Whoever can write to the tracking server or the study database writes study, metric and param
names, param values, trial attributes, tags, run names and records. Each test forges those with
MLflow's and Optuna's own clients on real SQLite stores, then reads what the user would see.
"""

from __future__ import annotations

import ast
import json
import os
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from sweep import api
from sweep.cli import runner
from sweep.config.checks import prepare
from sweep.config.space import fingerprint
from sweep.core import console
from sweep.core.errors import SweepError
from sweep.serve import report
from sweep.study import progress
from sweep.study.study import PARENT_ATTR, RUN_ATTR, load_existing, open_sweep
from sweep.study.worker import Helpers
from sweep.tracking import Reader

HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{7*7}}", "</style>")
# A window-title rewrite (OSC), a screen clear (CSI), and a carriage return over the line.
ESCAPES = ("\x1b]0;pwned\x07", "\x1b[2J", "\r")
EVIL = "a" + "b".join(ESCAPES) + "c"
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # every control character but newline
TINY = ("experiment=tiny", "tracking=none", "search/pruner=none", "search.n_trials=1")


# --------------------------------------------------------------------------- the report's HTML

PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "section"}
PAGE_TAGS |= {"table", "tr", "th", "td", "img"}


class Elements(HTMLParser):
    """The elements and attributes a browser would build from the page, and the text it shows."""

    def __init__(self, page: str) -> None:
        super().__init__()  # convert_charrefs: the text as shown, `&lt;` read as `<`
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[str, str] = {}  # tag -> the text of every such element, joined
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        tag = self.tags[-1][0] if self.tags else ""
        self.text[tag] = self.text.get(tag, "") + data


def assert_inert(page: str) -> Elements:
    """Only the template's own elements and attributes; each hostile string shown as text."""
    parsed = Elements(page)
    assert {tag for tag, _ in parsed.tags} <= PAGE_TAGS, {tag for tag, _ in parsed.tags}
    for tag, attrs in parsed.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,"), attrs
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert page.count("</style>") == 1
    shown = "".join(text for tag, text in parsed.text.items() if tag != "style")
    for text in HOSTILE:
        assert text in shown, text
    return parsed


def _forge_runs(client: MlflowClient, store: Path) -> tuple[str, list[str]]:
    """A parent run with a robustness table and four trial runs, every text field hostile."""
    exp = client.create_experiment(HOSTILE[0], artifact_location=(store / "artifacts").as_uri())
    parent = client.create_run(exp, run_name=HOSTILE[1], tags={"sweep.kind": "sweep"}).info.run_id
    runs = []
    for i, text in enumerate(HOSTILE):
        tags = {"sweep.kind": "trial", "sweep.state": text, "fail_reason": text}
        run = client.create_run(exp, run_name=text, tags=tags).info.run_id
        params = {k: HOSTILE[(i + j) % 4] for j, k in enumerate(report.CONFIG_KEYS)}
        for key, value in {**params, "data._target_": text, "n_params": "41"}.items():
            client.log_param(run, key, value)
        runs.append(run)
    name = HOSTILE[2]  # the robustness table's objective, as a forged artifact names it
    config = {
        "trial": HOSTILE[0],
        "run_id": HOSTILE[1],
        f"{name}_original": HOSTILE[3],
        f"{name}_mean": HOSTILE[0],
        f"{name}_std": HOSTILE[1],
        "n_seeds": HOSTILE[2],
        "rank_original": HOSTILE[3],
        "rank_by_mean": 1,
    }
    table = {"objective": name, "configurations": [config]}
    client.log_text(parent, json.dumps(table), "robust/seed_robustness.json")
    return parent, runs


def _forge_study(storage: str, name: str, parent: str | None, runs: list[str]) -> None:
    """A study whose metric names, param names and values and attributes are all hostile."""
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    with warnings.catch_warnings():  # set_metric_names is experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([HOSTILE[0]])
    if parent:
        study.set_user_attr(PARENT_ATTR, parent)
    names = [f"model.{text}" for text in HOSTILE]
    dists = {k: CategoricalDistribution(HOSTILE) for k in names}
    for i, run in enumerate(runs or [None] * 4):
        params = {k: HOSTILE[(i + j) % 4] for j, k in enumerate(names)}
        attrs = {RUN_ATTR: run, "fail_reason": HOSTILE[i], "baseline": i == 0, HOSTILE[i]: i}
        study.add_trial(
            create_trial(value=1.0 / (i + 1), params=params, distributions=dists, user_attrs=attrs)
        )
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": HOSTILE[3]}))


@pytest.fixture(scope="module")
def forged_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store (MLflow's schema takes seconds to create) with the forged runs and studies:
    `sine-mlp`, the name `report` is given, and one study named by each hostile string."""
    store = tmp_path_factory.mktemp("forged")
    parent, runs = _forge_runs(MlflowClient(f"sqlite:///{store}/mlflow.db"), store)
    storage = f"sqlite:///{store}/optuna.db"
    _forge_study(storage, "sine-mlp", parent, runs)
    for name in HOSTILE:
        _forge_study(storage, name, None, [])
    return store


def test_a_forged_study_and_runs_put_no_markup_in_the_report(compose_cfg, forged_store, capsys):
    """Metric, param and config names and values, notes, the robustness table: all as text,
    in the file and in the parent run's report.html."""
    cfg = compose_cfg("experiment=tiny", store=forged_store)
    assert report.report_command(cfg, []) == 0
    page = (forged_store / "reports" / "sine-mlp.html").read_text()
    assert_inert(page)
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    # no Pareto front (one objective), no run's plots (sine draws its own predictions)
    assert headings == [title for key, title in report.SECTIONS if key not in ("pareto", "plots")]
    assert "Over new seeds" in page  # the forged robustness table, shown as text
    parent = load_existing(cfg.search.storage, "sine-mlp").user_attrs[PARENT_ATTR]
    client = MlflowClient(cfg.tracking.uri)
    logged = client.download_artifacts(parent, "report.html", str(forged_store / "logged"))
    assert Path(logged).read_text() == page
    assert "report: " in capsys.readouterr().out


@pytest.mark.parametrize("name", HOSTILE)
def test_a_forged_study_name_is_text_in_the_report(forged_store, name):
    """`validate` holds names a user types; one written straight into the storage is not."""
    storage = f"sqlite:///{forged_store}/optuna.db"
    study = load_existing(storage, name)
    reader = Reader(f"sqlite:///{forged_store}/mlflow.db")
    page, summary = report.build_report(study, reader, storage)
    assert summary["study"] == name
    assert assert_inert(page).text["title"] == f"Sweep report: study {name}"


def test_only_a_png_data_uri_is_taken_as_an_image():
    assert report.Figure("data:image/png;base64,iVBORw0KGgo=", "ok").src
    for uri in ('data:image/png;base64,AA" onerror="alert(1)', "javascript:alert(1)"):
        with pytest.raises(ValueError, match="not an inline PNG"):
            report.Figure(uri, "x")


# --------------------------------------------------------------------------- the terminal


def assert_printable(text: str) -> None:
    assert text.strip(), "nothing printed"
    assert not CONTROL.search(text), repr(text)


def test_say_and_error_show_every_line_without_its_control_characters(capsys):
    console.say(f"first {EVIL}\nsecond {EVIL}", prefix="[w1] ")
    console.error(f"[w2] {EVIL}")
    out, err = capsys.readouterr()
    assert out == "[w1] first a?]0;pwned?b?[2Jb?c\nsecond a?]0;pwned?b?[2Jb?c\n"
    assert err == "error: [w2] a?]0;pwned?b?[2Jb?c\n"


def test_the_live_view_keeps_its_own_escapes_and_none_of_the_stores(tmp_path):
    """Study name, metric name and best params, redrawn in place: only the view's cursor moves."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name=f"s{EVIL}\nx", storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"m{EVIL}"])
    dist = CategoricalDistribution([EVIL])
    study.add_trial(
        create_trial(value=0.5, params={f"p.{EVIL}": EVIL}, distributions={f"p.{EVIL}": dist})
    )
    with (tmp_path / "view.txt").open("w+", newline="") as out:
        view = progress.Live(
            optuna.load_study(study_name=study.study_name, storage=storage), 4, 3, out
        )
        view.note(f"status {EVIL}")
        view.close()
        out.seek(0)
        text = out.read()
    own = re.sub(r"\r|\x1b\[(2K|\d+A|J)", "", text)
    assert_printable(own)
    assert (
        "best  trial 0  ma?]0;pwned?" in own
        and "c=5.000e-01  a?]0;pwned?b?[2Jb?c=a?]0;pwned" in own
        and "status a?" in own
    )
    # Two frames: 5 lines (the name's newline makes two), then 6 with the status, drawn over it.
    assert text.count("\x1b[J") == 2 and "\x1b[4A" in text


def _forged_sweep(compose_cfg, tmp_path: Path, *overrides: str) -> tuple[list[str], optuna.Study]:
    """A study opened as `sweep` opens it, then loaded with Optuna's own client to forge."""
    args = [*TINY, *overrides]
    open_sweep(prepare(compose_cfg(*args)), args)  # as `python -m sweep` prepares it
    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{tmp_path}/optuna.db")
    return [*args, f"paths.store={tmp_path}"], study


def test_a_sweeps_summary_and_budget_stop_show_forged_text_as_printable(
    compose_cfg, tmp_path, capsys
):
    """The best trial's params and `stopped_by`, forged: the closing lines stay plain text."""
    args, study = _forged_sweep(compose_cfg, tmp_path)
    params = {f"model.{EVIL}": EVIL, "optimizer.learning_rate": 0.01}
    dists = {
        f"model.{EVIL}": CategoricalDistribution([EVIL]),
        "optimizer.learning_rate": FloatDistribution(0.001, 0.3, log=True),
    }
    study.add_trial(
        create_trial(value=1e-9, params=params, distributions=dists, user_attrs={RUN_ATTR: EVIL})
    )
    study.set_user_attr("stopped_by", f"timeout {EVIL}")
    assert runner.main(["sweep", *args]) == 0  # the forged trial meets n_trials=1: none trains
    out, err = capsys.readouterr()
    assert_printable(out + err)
    assert "stopped early by its budget: timeout a?]0;pwned?" in out
    assert "best: trial 1  val_mse=1.000e-09  a?]0;pwned?b?[2Jb?c=a?]0;pwned" in out


def test_a_workers_stop_on_forged_failures_shows_them_as_printable(compose_cfg, tmp_path, capsys):
    """search.max_failed_trials reached by forged failures: the stop line names the last reason."""
    args, study = _forged_sweep(compose_cfg, tmp_path, "search.max_failed_trials=2")
    for _ in range(2):
        study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": EVIL}))
    assert runner.main(["sweep", *args]) == 1
    out, err = capsys.readouterr()
    assert_printable(out + err)
    assert "has 2 failed trials (search.max_failed_trials=2); last: a?]0;pwned?" in err


def test_a_warm_start_from_forged_trials_names_them_as_printable(compose_cfg, tmp_path, capsys):
    """An earlier study's trial with a forged param name is skipped, and said so, in plain text."""
    overrides = [*TINY, "search.study_name=b", "search.warm_start_from=a", "search.timeout=0.001"]
    cfg = prepare(compose_cfg(*overrides))
    source = optuna.create_study(study_name="a", storage=cfg.search.storage)
    source.set_user_attr("fixed_config", fingerprint(cfg)[1])
    params = {
        "model.depth": 2,
        "model.width": 16,
        "model.activation": "tanh",
        "optimizer.learning_rate": 0.01,
        f"model.{EVIL}": 1.0,
    }
    dists = {
        "model.depth": IntDistribution(1, 6),
        "model.width": IntDistribution(8, 64, log=True),
        "model.activation": CategoricalDistribution(["tanh", "relu", "sigmoid", "elu"]),
        "optimizer.learning_rate": FloatDistribution(0.001, 0.3, log=True),
        f"model.{EVIL}": FloatDistribution(0, 1),
    }
    source.add_trial(create_trial(value=0.1, params=params, distributions=dists))
    # search.timeout is spent before the first trial: the line is said, nothing trains.
    assert runner.main(["sweep", *overrides, f"paths.store={tmp_path}"]) == 0
    out, err = capsys.readouterr()
    assert_printable(out + err)
    assert "warm start from 'a': copied 0 trial(s), skipped 1 (trial 0: model.a?]0;pwned?" in out


# --------------------------------------------------------------------------- slow: real training


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real tiny sweep of one trial: a trial run with its record, and the parent run."""
    store = tmp_path_factory.mktemp("swept")
    before = os.environ.get("MLFLOW_TRACKING_URI")  # a module fixture runs before conftest's guard
    try:
        api.sweep(
            "experiment=tiny",
            "search.n_trials=1",
            "tracking.log_model=false",
            "tracking.log_plots=false",
            f"paths.store={store}",
        )
    finally:
        mlflow.set_tracking_uri(None)  # it exports MLFLOW_TRACKING_URI: keep later tests' stores
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
    return store


def _trial_run(store: Path) -> str:
    study = load_existing(f"sqlite:///{store}/optuna.db", "sine-mlp")
    return study.trials[0].user_attrs[RUN_ATTR]


@pytest.mark.slow
def test_a_rerun_of_a_forged_record_compares_in_printable_text(swept, tmp_path, capsys):
    """The record's `versions` keys and values, its run's name, state and failure reason."""
    run_id = _trial_run(swept)
    client = MlflowClient(f"sqlite:///{swept}/mlflow.db")
    replay = json.loads(
        Path(client.download_artifacts(run_id, "replay.json", tmp_path)).read_text()
    )
    replay["versions"][EVIL] = EVIL
    client.log_text(run_id, json.dumps(replay), "replay.json")
    client.set_tag(run_id, "fail_reason", EVIL)
    client.set_tag(run_id, "sweep.state", EVIL)
    client.update_run(run_id, status="FAILED", name=f"n{EVIL}")
    capsys.readouterr()
    code = runner.main(["rerun", run_id, "--store", str(swept)])
    out, err = capsys.readouterr()
    assert code in (0, 1), err  # reproduced or not: this test is about what it says
    assert_printable(out + err)
    assert f"rerunning run {run_id} (na?]0;pwned?b?[2Jb?c)" in out
    assert "  - a?]0;pwned?b?[2Jb?c a?]0;pwned?b?[2Jb?c -> absent" in out
    assert "note: the original ended FAILED (a?]0;pwned?b?[2Jb?c; a?]0;pwned" in out


@pytest.mark.slow
def test_robusts_table_of_a_forged_trial_is_printable(swept, capsys):
    """A trial added to the study with forged params, pointing at a genuine record."""
    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{swept}/optuna.db")
    dists = {f"model.{EVIL}": CategoricalDistribution([EVIL])}
    attrs = {RUN_ATTR: _trial_run(swept)}
    params = {f"model.{EVIL}": EVIL}
    study.add_trial(create_trial(value=1e-9, params=params, distributions=dists, user_attrs=attrs))
    capsys.readouterr()
    code = runner.main(["robust", "sine-mlp", "--top", "1", "--seeds", "1", "--store", str(swept)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert_printable(out + err)
    assert "| a?]0;pwned?b?[2Jb?c |" in out and "| a?]0;pwned?b?[2Jb?c | val_mse_original" in out


@pytest.mark.slow
def test_a_helper_workers_stop_line_on_forged_failures_is_printable(tmp_path, capfd):
    """A spawned worker (make sweep JOBS=2) stops on forged failures; its one line on stderr."""
    args = [*TINY, "search.max_failed_trials=2", f"paths.store={tmp_path}"]
    cfg = api.compose(*args)
    study = open_sweep(cfg, args).study
    for _ in range(2):
        study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": EVIL}))
    with Helpers(cfg, args, jobs=2, live=False) as helpers:
        helpers.go()
        with pytest.raises(SweepError, match="1 worker"):
            helpers.join()
    said = [line for line in capfd.readouterr().err.split("\n") if "[w1]" in line]
    assert said == [
        "error: [w1] study 'sine-mlp' has 2 failed trials (search.max_failed_trials=2); "
        "last: a?]0;pwned?b?[2Jb"  # first_line() ends the line at the forged \r
    ]


# --------------------------------------------------------------------------- the one way out

# Modules that still print on their own: their own text (usage, URLs they mask, server lines) or
# an error line through `config.printable` (runner). Any other module says it through console.
PRINTS_ON_ITS_OWN = {
    "cli/runner",
    "serve/dashboard",
    "serve/ui",
    "serve/server",
    "core/processes",
    "tracking/runs",
}


def _writes_to_terminal(node: ast.AST) -> bool:
    """`print(...)`, or `sys.stdout.write(...)` / `sys.stderr.write(...)`."""
    if not isinstance(node, ast.Call):
        return False
    if isinstance(node.func, ast.Name):
        return node.func.id == "print"
    target = node.func
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "write"
        and isinstance(target.value, ast.Attribute)
        and target.value.attr in ("stdout", "stderr")
    )


def test_only_console_writes_to_the_terminal():
    """Every other module says its lines through console (or draws through progress.Live, which
    filters its frame), so store text meets `console.shown` on its way to the screen."""
    src = Path(__file__).resolve().parents[2] / "src" / "sweep"
    writers = {
        str(path.relative_to(src).with_suffix(""))
        for path in src.rglob("*.py")
        if any(_writes_to_terminal(n) for n in ast.walk(ast.parse(path.read_text())))
    }
    assert writers - PRINTS_ON_ITS_OWN == {"core/console"}
