"""The one runner: bad input to any command is exit 2, one `error:` line, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT, clean_env

# In one fresh process, each argv through sweep.cli.runner.main with stdout and stderr captured;
# after each case: the paths that appeared under the test's folder (then removed, so each case
# is judged alone) and the heavy modules loaded (cumulative, so the order of CASES matters).
CASES_SCRIPT = """
import contextlib, io, json, shutil, sys
from pathlib import Path
from sweep.cli.runner import main

root = Path(sys.argv[2])
before = set(root.rglob("*"))
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    new = sorted(set(root.rglob("*")) - before)
    for path in new:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    loaded = [m for m in ("tensorflow", "keras", "mlflow") if m in sys.modules]
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue(), "loaded": loaded,
                    "wrote": [str(p.relative_to(root)) for p in new]})
print(json.dumps(results))
"""

# (id, argv with {store}, what the one line says, modules that must not be loaded yet).
# The config checks come first: they must refuse before MLflow too, not only TensorFlow.
NO_TF, NO_TF_MLFLOW = ("tensorflow", "keras"), ("tensorflow", "keras", "mlflow")
CASES = [
    ("baseline", ["baseline", "model.depth=0", "paths.store={store}"], "model.depth", NO_TF_MLFLOW),
    (
        "launch",  # its own options parsed, its overrides checked before Ray starts anything
        ["launch", "--workers", "2", "model.depth=0", "paths.store={store}"],
        "model.depth",
        (*NO_TF_MLFLOW, "ray"),
    ),
    (
        "mandatory",  # `???` keys left unset: all named, not OmegaConf's traceback of the first
        ["baseline", "data=csv", "paths.store={store}"],
        "data.path and data.targets are required",
        NO_TF_MLFLOW,
    ),
    (
        "sweep",
        ["sweep", "experiment=tiny", "search.storage=notaurl", "paths.store={store}"],
        "search.storage='notaurl' is not a URL",
        NO_TF_MLFLOW,
    ),
    (
        "worker",
        ["worker", "experiment=tiny", "trainer.epochs=2.5", "paths.store={store}"],
        "trainer.epochs must be a positive integer, got 2.5",
        NO_TF_MLFLOW,
    ),
    pytest.param(
        "report",
        ["report", "search.study_name=nope", "paths.store={store}"],
        "no study 'nope'",
        NO_TF,
    ),
    ("rerun-no-id", ["rerun", "--store", "{store}"], "required: run_id", NO_TF),
    ("rerun-no-store", ["rerun", "0" * 32, "--store", "{store}"], "no MLflow store at", NO_TF),
    ("robust", ["robust", "sine-mlp", "--top", "abc", "--store", "{store}"], "--top", NO_TF),
    ("predict-no-store", ["predict", "--store", "{store}"], "no MLflow store at", NO_TF),
    ("predict", ["predict", "--x", "abc", "--store", "{store}"], "invalid float", NO_TF),
    ("ui", ["ui", "--port", "notaport", "--store", "{store}"], "--port", NO_TF),
    ("dashboard", ["dashboard", "--port", "x", "--store", "{store}"], "--port", NO_TF),
    ("ui-no-store", ["ui", "--store", "{store}"], "no MLflow store at", NO_TF),
    ("server", ["server", "--workers", "many"], "--workers", NO_TF),
    ("server-no-db", ["server"], "no backend store", NO_TF),
    ("proxy", ["proxy", "--threads", "many"], "--threads", NO_TF),
    (
        "proxy-sqlite",
        ["proxy", "--storage", "sqlite:///{store}/optuna.db"],
        "fronts a database server",
        NO_TF,
    ),
    (  # after `server`, which loads MLflow in this one process: NO_TF
        "worker-grpc",  # through a proxy, a grace its heartbeats cannot keep
        [
            "worker",
            "search.storage=grpc://127.0.0.1:9",
            "search.grace_period=15",
            "paths.store={store}",
        ],
        "grace_period >= 2 * heartbeat_interval",
        NO_TF,
    ),
]


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Run every case in one fresh process (no TensorFlow from other tests); results by id."""
    root = tmp_path_factory.mktemp("refused")
    cwd, store = root / "cwd", root / "store"  # the store does not exist and must not appear
    cwd.mkdir()
    argvs = [[a.format(store=store) for a in case_of(c)[1]] for c in CASES]
    env = {**clean_env(), "PYTHONPATH": str(ROOT / "src")}
    env.pop("SWEEP_TRACKING_DB", None)
    env.pop("SWEEP_TRACEBACK", None)
    out = subprocess.run(
        [sys.executable, "-c", CASES_SCRIPT, json.dumps(argvs), str(root)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    return {case_of(c)[0]: result for c, result in zip(CASES, results, strict=True)}


def case_of(case: Any) -> tuple:
    """A row of CASES, whether plain or wrapped in pytest.param for its marks."""
    return tuple(case.values) if hasattr(case, "values") else case


@pytest.mark.parametrize(
    ("case", "argv", "said", "not_loaded"), CASES, ids=[case_of(c)[0] for c in CASES]
)
def test_bad_input_is_exit_2_one_error_line_and_nothing_written(
    refused, case, argv, said, not_loaded
):
    result = refused[case]
    assert result["code"] == 2, result
    lines = result["err"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], lines
    assert result["out"] == ""
    assert result["wrote"] == [], f"{case} wrote {result['wrote']} before refusing"
    assert not set(not_loaded) & set(result["loaded"]), f"refused after importing {result}"


def test_every_command_has_a_bad_input_case():
    from sweep.cli.runner import COMMANDS

    assert {case_of(c)[1][0] for c in CASES} == set(COMMANDS)
