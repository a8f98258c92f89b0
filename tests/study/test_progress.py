"""The progress view: drawn from a real Optuna study; a real sweep with JOBS=2 in a real pty.

The fast tests build a study in memory with trials in every state and read the view's lines;
the slow one runs `python -m sweep sweep search.jobs=2` on a pseudo-terminal (Python's `pty`)
and reads what a user's terminal would receive.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from sweep.core import console
from sweep.study import progress
from sweep.study.study import name_objectives
from tests.conftest import ROOT, clean_env

SPACE = {"model.depth": IntDistribution(1, 6)}


def study_in_every_state() -> optuna.Study:
    """Complete x2 (best: trial 1), pruned, diverged, surplus, and one running at epoch 3."""
    study = optuna.create_study(study_name="demo")
    name_objectives(study, ["val_mse"])
    for value in (0.5, 0.125):
        study.tell(study.ask(SPACE), value)
    study.tell(study.ask(SPACE), state=TrialState.PRUNED)
    for reason in ("loss diverged to nan at epoch 1", "surplus: the target was reached"):
        trial = study.ask(SPACE)
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
    running = study.ask(SPACE)
    for epoch in (1, 2, 3):
        running.report(0.3, epoch)
    return study


def test_snapshot_counts_states_and_finds_best_and_running_epoch():
    study = study_in_every_state()
    snap = progress.snapshot(study, target=10, since=datetime.now() - timedelta(minutes=1))
    assert (snap.complete, snap.pruned, snap.failed, snap.done) == (2, 1, 1, 3)
    assert snap.running == [(5, 3)]
    assert snap.best.number == 1
    assert snap.pace == pytest.approx(3.0, rel=0.05)  # 3 finished in the last minute
    assert snap.minutes_left == pytest.approx(7 / 3.0, rel=0.05)


def test_render_shows_counts_pace_best_and_running_trials():
    study = study_in_every_state()
    snap = progress.snapshot(study, target=10, since=datetime.now() - timedelta(minutes=1))
    first, states, best, running = progress.render(snap, epochs=50)
    assert first.startswith("study demo  3/10 finished  |")
    assert re.search(r"\|  3\.0 trials/min, 2m\d\ds left$", first)
    assert states == "trials  2 complete, 1 pruned, 1 failed, 1 running"
    assert best.startswith("best  trial 1  val_mse=1.250e-01  depth=")
    assert running == "running  trial 5 epoch 3/50"


def test_before_any_trial_the_view_says_so():
    study = optuna.create_study()
    lines = progress.render(progress.snapshot(study, 30, datetime.now()), 50, "waiting")
    assert lines[0].endswith("|  - trials/min, - left")
    assert lines[1:] == ["trials  0 complete, 0 pruned, 0 failed, 0 running", "best  -"] + [
        "running  -",
        "waiting",
    ]


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("val_accuracy", 0.941176, "0.9412"),  # a score: never 9.412e-01
        ("val_mse", 0.00125, "1.250e-03"),  # a loss spans decades
        ("train_seconds", 12.34, "12.3"),
        ("n_params", 1201.0, "1201"),
    ],
)
def test_each_metric_is_printed_for_what_it_is(metric: str, value: float, text: str):
    from sweep.study.summary import summary_text

    line = console.trial_line(3, 30, 2, "COMPLETE", value, (1, value), {}, 1.0, None, metric=metric)
    assert f"{metric}={text} " in line and f"best={text} (#1)" in line
    summary = {"study": "s", "states": {}, "best_trial": 1, "objective": metric}
    summary |= {"best_value": value, "best_params": {}, "best_run_id": None}
    assert f"{metric}={text} " in summary_text(summary)
    study = optuna.create_study(direction="maximize")
    name_objectives(study, [metric])
    study.add_trial(optuna.trial.create_trial(value=value))
    best = progress.render(progress.snapshot(study, 30, datetime.now()), 50)[2]
    assert best.startswith(f"best  trial 0  {metric}={text} ")


def test_at_80_columns_the_view_keeps_pace_and_time_left():
    """A terminal of 80 columns: the live view cuts each line at 79, so none may need more."""
    study = study_in_every_state()
    study.study_name = "sine-mlp-digits"  # a name of the length conf/ makes
    snap = progress.snapshot(study, target=300, since=datetime.now() - timedelta(minutes=1))
    lines = progress.render(snap, epochs=500)
    assert all(len(line) <= 79 for line in lines), [len(line) for line in lines]
    assert re.search(r"3\.0 trials/min, 1h39m left$", lines[0]), lines[0]


@pytest.mark.parametrize(
    ("minutes", "text"), [(None, "-"), (0.5, "30s"), (2.5, "2m30s"), (125, "2h05m")]
)
def test_fmt_minutes(minutes, text):
    assert progress.fmt_minutes(minutes) == text


def read_all(master: int, proc: subprocess.Popen | None = None) -> str:
    """Everything written to the pty until it is closed (or quiet once `proc` has ended)."""
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the writing end is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc is None or proc.poll() is not None:
            break
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_live_view_redraws_in_place_on_a_pty():
    """Each frame goes back up over the last one; an unchanged frame is not written again."""
    master, slave = pty.openpty()
    study = study_in_every_state()
    with os.fdopen(slave, "w") as out:
        view = progress.Live(study, 10, 50, out=out)
        view.refresh()  # unchanged: nothing written
        study.tell(study.ask(SPACE), 0.0625)  # a new best
        view.refresh()
        view.close()
    text = read_all(master)
    first, second, *_ = text.split("\x1b[J")
    assert first.startswith("\r\x1b[2Kstudy demo  3/10 finished") and "trial 1" in first
    # the unchanged refresh wrote nothing; the next frame goes 3 lines up over the first
    assert second.startswith("\r\x1b[3A") and "best  trial 6  val_mse=6.250e-02" in second
    assert text.endswith("\n")  # closed: what follows prints below the view


def test_objectives_are_named_for_every_optuna_tool():
    study = optuna.create_study()
    name_objectives(study, ["val_mse"])
    name_objectives(study, ["other"])  # a named study keeps its names
    assert study.metric_names == ["val_mse"]


# --------------------------------------------------------------------------- slow: real pty


def run_on_pty(*args: str, timeout: float = 300) -> tuple[int, str]:
    """`python -m sweep <args>` with stdin, stdout and stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    env = {**clean_env(), "COLUMNS": "200", "LINES": "50"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep", *args],
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    text = read_all(master, proc)
    return proc.wait(timeout=timeout), text


@pytest.mark.slow
def test_two_workers_on_a_terminal_show_one_live_view(tmp_path: Path):
    code, text = run_on_pty(
        "sweep",
        "experiment=tiny",
        "search.n_trials=2",
        "search.jobs=2",
        "tracking.log_model=false",
        "tracking.log_plots=false",
        f"paths.store={tmp_path}",
    )
    assert code == 0, text
    assert "[w0]" not in text and "[w1]" not in text  # no interleaved worker lines
    frames = text.split("\x1b[J")
    assert any(re.search(r"running  trial \d (epoch \d/4|starting)", f) for f in frames), text
    last = frames[-2]  # the closing frame, before the summary
    assert "study sine-mlp  2/2 finished" in last and "trials/min" in last, last
    assert re.search(r"best  trial \d  val_mse=\d\.\d{3}e[-+]\d\d  depth=\d", last), last
    assert "best: trial" in frames[-1]  # the summary prints below the view
