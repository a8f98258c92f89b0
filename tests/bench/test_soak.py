"""The soak part: two spawned workers on one study, pace and memory at the end against the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import soak
from tests.bench import TINY


@pytest.mark.slow
def test_soak_part_runs_two_workers_on_one_study_and_sizes_the_stores(tmp_path: Path):
    r = soak.bench_soak(tmp_path, trials=4, epochs=1, overrides=TINY)
    assert r["states"].get("COMPLETE", 0) + r["states"].get("PRUNED", 0) == 4
    assert len(r["workers"]) == 2 and sum(len(w) for w in r["workers"]) >= 4
    for s in (s for w in r["workers"] for s in w):
        assert s["trial_s"] > 0 and s["cpu_s"] > 0 and s["ask_s"] >= 0 and s["reads"] >= 1
        assert s["VmRSS"] > 50
    assert r["sizes"]["optuna.db"] > 0 and r["sizes"]["mlflow.db"] > 0
    assert r["sizes"]["artifact_files"] > 0  # plots, model, config files of every trial
    rows = {row.what.split(":")[0]: row for row in soak.soak_section(r, 4, 1).rows}
    assert {"worker 0", "worker 1", "stores after the soak"} <= set(rows)


def _soak_samples(n: int, seconds: float, mb_a_trial: float) -> list[dict[str, float]]:
    return [
        {"trial": t, "number": 2 * t, "ask_s": 0.05, "trial_s": seconds * (1 + t / n) / 2,
         "cpu_s": seconds * (1 + t / n) / 2, "reads": 14, "read_s": 0.01,
         "VmRSS": 800 + mb_a_trial * t, "VmHWM": 900}
        for t in range(1, n + 1)
    ]  # fmt: skip


def test_soak_table_fails_on_a_slowing_pace_and_on_memory_growth():
    steady = {"states": {"COMPLETE": 300}, "wall": 600.0,
              "sizes": {"optuna.db": 2.0, "mlflow.db": 9.0, "artifacts": 80.0,
                        "artifact_files": 3000}}  # fmt: skip
    flat = [[{**s, "cpu_s": 1.0} for s in _soak_samples(150, 1.0, 0.1)] for _ in range(2)]
    ok = soak.soak_section({**steady, "workers": flat}, 300, 10)
    assert [r.verdict for r in ok.rows if r.verdict] == ["PASS", "PASS", "PASS"]
    assert "median of trials 11-40 / of the last 30" in ok.rows[1].what
    bad = soak.soak_section({**steady, "workers": [_soak_samples(150, 1.0, 2.0)] * 2}, 300, 10)
    assert [r.verdict for r in bad.rows if r.verdict] == ["FAIL", "FAIL", "FAIL"]
    assert "+280.0 MB" in bad.rows[5].value  # 2 MB a trial from trial 10 to trial 150
