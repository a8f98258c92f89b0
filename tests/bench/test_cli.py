"""The command line and its table: the registry of parts, `--only`, both entry points, render."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import cli
from benchmarks.common import Row, Section, render
from tests.conftest import ROOT, clean_env


def test_render_is_a_markdown_table_per_part():
    sec = Section("1. a part", [Row("x", "1 s", ">= 2", "FAIL")], ["a note"])
    text = render([sec], ["`python benchmarks/bench.py`"])
    assert "| measurement | value | target | result |" in text
    assert "| x | 1 s | >= 2 | FAIL |" in text and "_a note_" in text


def test_opt_in_parts_run_only_when_named():
    assert "peers" not in cli.parse_args([]).parts
    assert cli.parse_args(["--only", "peers"]).parts == ["peers"]


def test_unknown_part_is_refused():
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["--only", "fit,speed"])
    assert info.value.code == 2


def test_every_part_is_a_module_that_says_what_it_runs():
    assert cli.PARTS[0] == "startup" and cli.PARTS[-1] == "peers"
    for name in cli.PARTS:
        part = cli.part(name)
        assert part.__doc__.startswith(f"The {name} part: ") and part.WHAT and callable(part.run)


def test_python_m_benchmarks_is_the_same_command_line():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python benchmarks/bench.py [-h] [--only ONLY]")
    assert "--soak-space {fixed,default}" in proc.stdout


@pytest.mark.slow
def test_main_runs_the_workers_part_and_writes_the_table(tmp_path: Path):
    out = tmp_path / "bench.md"
    argv = shlex.split("--only workers --worker-trials 2 --worker-epochs 1 --worker-repeats 1")
    code = cli.main([*argv, "--set", "experiment=tiny", "--out", str(out)])
    text = out.read_text()
    assert code in (0, 1)  # a verdict, not a crash; timing is not asserted here
    assert "2 trials, end to end with start-up, a new study in existing stores: 1 worker" in text
    assert "2 trials, end to end with start-up, fresh stores (a project's first sweep)" in text
    assert "2 workers / 1 worker over the trials' span" in text


@pytest.mark.slow
def test_script_runs_from_its_own_folder_and_writes_the_table(tmp_path: Path):
    out = tmp_path / "bench.md"
    argv = shlex.split("--only fit --seeds 1 --epochs 1 --no-xla --set experiment=tiny")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), *argv, "--out", str(out)],
        cwd=tmp_path,  # not the repo root: the script finds conf/ from its own path
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # a verdict (0 or 1) ...
    assert "Traceback" not in proc.stderr, proc.stderr  # ... not a crash, which also exits 1
    text = out.read_text()
    assert text.startswith("`python benchmarks/bench.py --only fit --seeds 1")
    assert "**1. `model.fit` vs our compiled loop (1 epochs, median of 1 seeds)**" in text
    assert "| speed-up |" in text and text in proc.stdout
