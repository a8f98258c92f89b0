"""The Python API: the README's example runs as written; bad input is one ConfigError, no files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweep import api
from sweep.core.errors import ConfigError
from tests.conftest import ROOT


def readme_example() -> str:
    """The first python block of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_compose_gives_the_checked_config_of_the_command_line(tmp_path: Path):
    cfg = api.compose("experiment=tiny", f"paths.store={tmp_path}", "model.width=8")
    assert cfg.model.width == 8 and cfg.trainer.epochs == 4
    assert cfg.search.storage == f"sqlite:///{tmp_path}/optuna.db"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.depth=0", "model.depth"),
        ("optimizer=adagrad", "optimizer"),
        ("nonsense", "nonsense"),
        ("data=csv", "data.path and data.targets are required"),
    ],
)
def test_bad_input_is_one_config_error(override: str, message: str):
    with pytest.raises(ConfigError, match=message) as err:
        api.compose(override)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("call", [api.load_study, api.load_champion])
def test_reading_a_store_that_was_never_made_writes_nothing(call, tmp_path: Path):
    store = tmp_path / "none"
    with pytest.raises(ConfigError):
        call(f"paths.store={store}")
    assert not store.exists() or not any(store.iterdir())


def test_trials_of_an_empty_study_is_an_empty_table():
    import optuna

    assert api.trials(optuna.create_study()).empty


@pytest.mark.slow
def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """As a notebook would: in-process, results under the working directory's mlruns/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    scope: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)
    table = scope["table"]
    assert len(table) >= 3 and table.index.name == "number"
    assert {"state", "val_mse", "params.model.depth", "run_id", "seconds"} <= set(table.columns)
    finished = table[table.state.isin(["COMPLETE", "PRUNED"])]
    assert len(finished) == 3 and finished.run_id.notna().all()
    assert scope["result"].parent_run_id and scope["run"].run_id
    assert scope["champion"].predict([0.5, 1.0]).shape == (2,)
    out = capsys.readouterr().out
    assert re.search(r"\[1/3\] trial 0 ", out)  # one line per trial: not a terminal
    assert (tmp_path / "mlruns" / "optuna.db").is_file()


@pytest.mark.parametrize(
    ("target", "task", "warned"),
    [
        (lambda i: i % 2, "regression", True),  # a 0/1 label trained as a number
        (lambda i: i % 3, "regression", True),
        (lambda i: i % 2, "classification", False),
        (lambda i: i * 0.37, "regression", False),  # a real quantity
    ],
)
def test_integer_labels_as_regression_get_one_warning_line(target, task, warned, tmp_path, capsys):
    csv = tmp_path / "table.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{i % 5},{target(i)}\n" for i in range(200)))
    api.compose("data=csv", f"data.path={csv}", "data.targets=[label]", f"data.task={task}")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == int(warned), lines
    if warned:
        assert lines[0].startswith("warning: ") and "add data.task=classification" in lines[0]
