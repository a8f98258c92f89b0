"""The startup part: its verdicts, and how it sees a study's first trial."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from benchmarks import startup


def test_first_trial_is_judged_against_the_import_of_tensorflow_and_servers_on_tensorflow():
    seconds = {"tensorflow": 7.0, "first_trial": 7.4, "ui": 3.0, "dashboard": 4.0, "server": 6.0}
    seconds[startup.FIRST_START] = 9.0  # MLflow's migrations: shown, not judged
    imported = {"ui": False, "dashboard": True, "server": False, startup.FIRST_START: False}
    section = startup.startup_section(seconds, imported).rows
    first = [r for r in section if r.what.startswith("first start")]
    assert [(r.value, r.verdict) for r in first] == [("9.0 s, no TensorFlow", "")]
    rows = {r.what.split("`")[1]: r for r in section if r not in first}
    assert (rows["sweep"].value, rows["sweep"].verdict) == ("7.4 s (+0.4 s)", "PASS")
    assert rows["ui"].verdict == "PASS"
    assert (
        rows["dashboard"].value.endswith("imports TensorFlow")
        and rows["dashboard"].verdict == "FAIL"
    )
    assert rows["server"].verdict == "FAIL"  # 6 s


def test_a_trial_is_seen_only_once_the_study_holds_one(tmp_path: Path):
    db = tmp_path / "optuna.db"
    assert not startup._has_trial(db)
    with sqlite3.connect(db) as con:
        con.execute("create table trials (trial_id integer)")
    assert not startup._has_trial(db)
    with sqlite3.connect(db) as con:
        con.execute("insert into trials values (1)")
    assert startup._has_trial(db)
