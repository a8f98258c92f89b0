"""Hydra's own habits hold on every Hydra command: --cfg job, --help, multirun, no stray files."""

from __future__ import annotations

import re

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweep.cli import runner
from sweep.core.errors import EXIT_CODES, EXIT_OK, EXIT_USAGE

HYDRA_COMMANDS = [c.name for c in runner.COMMANDS.values() if c.hydra]


def test_every_command_is_in_the_one_table():
    assert set(runner.COMMANDS) >= {"baseline", "sweep", "worker", "report", "rerun", "robust"}
    assert {0, 1, 2, 130} == set(EXIT_CODES)


@pytest.mark.parametrize("command", HYDRA_COMMANDS)
def test_cfg_job_prints_the_composed_config(command, capsys, tmp_path):
    code = runner.main([command, "model.width=33", f"paths.store={tmp_path}", "--cfg", "job"])
    assert code == EXIT_OK
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["width"] == 33
    assert list(tmp_path.iterdir()) == []  # printing a config writes nothing


@pytest.mark.parametrize("command", list(runner.COMMANDS))
def test_help_works_on_every_command(command, capsys):
    assert runner.main([command, "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "usage" in out.lower() or "== Config ==" in out or "Powered by Hydra" in out
    assert "runner" not in out  # the program is named as users type it, not by our module


def test_usage_and_unknown_command(capsys):
    assert runner.main([]) == EXIT_USAGE
    out = capsys.readouterr().out
    assert all(name in out for name in runner.COMMANDS)
    assert runner.main(["trian"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown command 'trian'")


@pytest.mark.parametrize("command", [c for c in HYDRA_COMMANDS if c != "baseline"])
def test_multirun_is_refused_in_one_line_where_it_cannot_run_every_job(command, capsys, tmp_path):
    assert runner.main([command, "-m", "model.depth=1,2", f"paths.store={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not take -m" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_hydra_composition_errors_are_one_line(capsys, tmp_path):
    for bad, said in (
        ("optimizer=adagrad", "Available options in 'optimizer':"),
        ("no_such_key=1", "Could not override 'no_such_key'"),
        ("model.depth=[", "no viable alternative"),
    ):
        assert runner.main(["baseline", bad, f"paths.store={tmp_path}"]) == EXIT_USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and said in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_multirun_baseline_runs_every_job(capsys, tmp_path):
    """A grid of baselines is a grid of runs, each with its line (all but one were dropped)."""
    argv = ["baseline", "-m", "model.depth=1,2,3", "experiment=tiny", f"paths.store={tmp_path}"]
    assert runner.main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert len(re.findall(r"^\r?run [0-9a-f]{32}", out, flags=re.M)) == 3
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sine").experiment_id])
    assert sorted(r.data.params["model.depth"] for r in runs) == ["1", "2", "3"]


@pytest.mark.slow
def test_a_diverging_baseline_is_one_line_and_exit_1(capsys, tmp_path):
    argv = ["baseline", "experiment=tiny", "optimizer.learning_rate=50", f"paths.store={tmp_path}"]
    assert runner.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"error: loss diverged to (nan|inf) at epoch \d+", err[0])
