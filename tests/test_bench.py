"""`benchmarks/bench.py` on tiny sizes: each part runs, measures what it says, the table reads.

No timing assertions: the numbers depend on a shared machine; `make bench` is the measurement.
"""

from __future__ import annotations

import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench
from tests.conftest import ROOT, clean_env

TINY = ("experiment=tiny",)


def test_fit_part_times_model_fit_and_our_loop_seed_by_seed(tmp_path: Path):
    r = bench.bench_fit(seeds=2, epochs=1, xla=False, store=tmp_path, overrides=TINY)
    assert set(r) == {"fit_s", "fit_mse", "loop_s", "loop_mse"}
    assert all(len(v) == 2 and all(x > 0 and math.isfinite(x) for x in v) for v in r.values())
    # one epoch of the same algorithm from the same seed: comparable losses
    assert 0.2 < r["fit_mse"][0] / r["loop_mse"][0] < 5


def test_fit_table_passes_and_fails_on_the_targets():
    fast = {"fit_s": [4.0] * 3, "loop_s": [0.3] * 3, "fit_mse": [0.003] * 3}  # 13.3x
    ok = bench.fit_section({**fast, "loop_mse": [0.0033] * 3}, 50)
    assert [r.verdict for r in ok.rows if r.verdict] == ["PASS", "PASS"]
    slow = {**fast, "loop_s": [1.0] * 3, "loop_mse": [0.006] * 3, "xla_s": [0.3] * 3}
    bad = bench.fit_section({**slow, "xla_mse": [0.003] * 3}, 50)
    verdicts = [r.verdict for r in bad.rows if r.verdict]
    assert verdicts == ["FAIL", "FAIL", "faster"]  # 4x; MSE factor 2; XLA faster


def test_trial_part_times_trials_with_and_without_tracking(tmp_path: Path):
    r = bench.bench_trial(tmp_path, measured=2, overrides=TINY)
    assert r["n"] == 2
    assert r["wall"] > r["train"] > 0 and r["wall_none"] > 0 and r["bare"] > 0 and r["fit"] > 0
    assert {"config.yaml", "overrides.txt", "replay.json", "plots"} <= set(r["artifacts"])
    # warm-up + 2 tracked trials, every plot on disk when it returns; none for tracking=none
    assert len(list(tmp_path.rglob("prediction.png"))) == 3
    rows = trial_rows(r)
    assert rows["one trial with all tracking against `model.fit`"].verdict in ("PASS", "FAIL")
    assert rows["everything outside training"].value.endswith("%")
    # every phase was timed in the tracked trials, and the functions are themselves again after
    assert {label for label, _, _ in bench.PHASES} <= set(r["phases"])
    assert 0 < r["phases"]["final metrics"] < r["phases"]["training"] < r["wall"]
    from sweep import worker

    assert worker.next_trial.__qualname__ == "next_trial"  # not phase_clock's wrapper
    by_phase = rows["a tracked trial by phase, mean ms"].value
    assert by_phase.startswith("ask ") and "(final metrics " in by_phase and " · other " in by_phase


def trial_rows(r: dict) -> dict[str, bench.Row]:
    """The trial part's rows by the start of their label (before any parenthesis)."""
    return {x.what.split(" (")[0]: x for x in bench.trial_section(r).rows}


def test_trial_table_holds_each_figure_to_its_target():
    r = {"first_wall": 2.0, "first_train": 1.0, "wall": 0.5, "wall_none": 0.45, "train": 0.44,
         "bare": 0.40, "fit": 4.5, "n": 8, "artifacts": ["model"]}  # fmt: skip
    rows = trial_rows(r)
    assert rows["one trial with all tracking against `model.fit`"].value == "9.0x"
    assert rows["one trial with all tracking against `model.fit`"].verdict == "PASS"
    assert rows["the per-epoch hooks"].value == "+10%"
    assert rows["the per-epoch hooks"].verdict == "PASS"
    assert rows["everything outside training"].value == "+14%"
    assert rows["everything outside training"].verdict == "PASS"
    slow = trial_rows({**r, "wall": 0.6, "train": 0.5})  # 7.5x, +25% hooks, +20% outside
    assert [x.verdict for x in slow.values() if x.verdict] == ["FAIL", "FAIL", "FAIL", "PASS"]


def test_workers_table_holds_each_size_to_its_target():
    def run(wall: float, span: float, n: int = 12) -> dict:
        return {"trials": n, "span": span, "wall": wall, "runs": 2}

    sizes = {4: (run(10.0, 3, 4), run(9.0, 2, 4)), 12: (run(18.0, 12), run(12.0, 6.5))}
    fresh = {12: (run(21.0, 12), run(15.5, 6.5))}
    rows = {r.what: r for r in bench.workers_section(sizes, 50, fresh).rows}
    existing = "end to end with start-up, a new study in existing stores"
    assert rows[f"4 trials, {existing}: 1 worker / 2 workers"].target == ">= 1x"
    twelve = rows[f"12 trials, {existing}: 1 worker / 2 workers"]
    assert (twelve.value, twelve.target, twelve.verdict) == (
        "18.0 s / 12.0 s = 1.50x",
        ">= 1.4x",
        "PASS",
    )
    first = rows["12 trials, end to end with start-up, fresh stores (a project's first sweep): "
                 "1 worker / 2 workers"]  # fmt: skip
    assert (first.value, first.verdict) == ("21.0 s / 15.5 s = 1.35x", "FAIL")
    assert rows["12 trials, 1 worker (`search.jobs=1`)"].value.startswith("60.0 trials/min")
    assert rows["2 workers / 1 worker over the trials' span"].value == "1.85x"
    slower = bench.workers_section({4: (run(10.0, 3, 4), run(10.5, 2, 4))}, 50)
    assert slower.rows[0].verdict == "FAIL"  # never slower than one worker, at any size


def test_memory_worker_samples_rss_after_every_trial(tmp_path: Path):
    samples = bench.memory_worker(str(tmp_path), trials=3, epochs=1, overrides=TINY)
    assert [s["trial"] for s in samples] == [0, 1, 2, 3]
    assert all(s["VmHWM"] >= s["VmRSS"] > 50 for s in samples)
    sec = bench.memory_section(samples, 1)
    assert "growth from trial 3 to trial 3" in sec.rows[-1].what  # fewer than 5: clamped


def test_memory_table_fails_on_growth():
    samples = [{"trial": t, "VmRSS": 500 + 3 * t, "VmHWM": 600 + 3 * t} for t in range(31)]
    sec = bench.memory_section(samples, 10)
    assert sec.rows[-1].value == "+75.0 MB" and sec.rows[-1].verdict == "FAIL"


def test_render_is_a_markdown_table_per_part():
    sec = bench.Section("1. a part", [bench.Row("x", "1 s", ">= 2", "FAIL")], ["a note"])
    text = bench.render([sec], ["`python benchmarks/bench.py`"])
    assert "| measurement | value | target | result |" in text
    assert "| x | 1 s | >= 2 | FAIL |" in text and "_a note_" in text


def test_unknown_part_is_refused():
    with pytest.raises(SystemExit) as info:
        bench.parse_args(["--only", "fit,speed"])
    assert info.value.code == 2


@pytest.mark.slow
def test_main_runs_the_workers_part_and_writes_the_table(tmp_path: Path):
    out = tmp_path / "bench.md"
    argv = shlex.split("--only workers --worker-trials 2 --worker-epochs 1 --worker-repeats 1")
    code = bench.main([*argv, "--set", "experiment=tiny", "--out", str(out)])
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


def test_digits_part_times_model_fit_and_our_loop_on_a_classification_problem(tmp_path: Path):
    r = bench.bench_digits(seeds=1, epochs=1, store=tmp_path)
    assert all(len(v) == 1 and v[0] > 0 for v in r.values())
    assert all(0.05 < r[k][0] <= 1 for k in ("fit_acc", "loop_acc"))  # 10 classes: chance 0.1
    assert [row.what for row in bench.digits_section(r, 1).rows][2] == "speed-up"


def test_search_table_gives_median_best_and_first_trial_below_the_goal():
    runs = {
        "tpe": [[1e-2, None, 5e-5], [2e-3, 9e-5, 1e-5], [3e-3, 1e-3, 2e-4]],
        "gp": "not run: GPSampler needs torch (pip install 'sweep[gp]')",
    }
    rows = {r.what: r.value for r in bench.search_section(runs, 3, 3).rows}
    assert rows["tpe"].startswith("5.00e-05 (seeds: 5.0e-05, 1.0e-05, 2.0e-04)")
    assert rows["tpe"].endswith("first < 1e-04 at trial 3, 2, never")
    assert rows["gp"].startswith("not run: GPSampler needs torch")


@pytest.mark.slow
def test_soak_part_runs_two_workers_on_one_study_and_sizes_the_stores(tmp_path: Path):
    r = bench.bench_soak(tmp_path, trials=4, epochs=1, overrides=TINY)
    assert r["states"].get("COMPLETE", 0) + r["states"].get("PRUNED", 0) == 4
    assert len(r["workers"]) == 2 and sum(len(w) for w in r["workers"]) >= 4
    for s in (s for w in r["workers"] for s in w):
        assert s["trial_s"] > 0 and s["cpu_s"] > 0 and s["ask_s"] >= 0 and s["reads"] >= 1
        assert s["VmRSS"] > 50
    assert r["sizes"]["optuna.db"] > 0 and r["sizes"]["mlflow.db"] > 0
    assert r["sizes"]["artifact_files"] > 0  # plots, model, config files of every trial
    rows = {row.what.split(":")[0]: row for row in bench.soak_section(r, 4, 1).rows}
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
    ok = bench.soak_section({**steady, "workers": flat}, 300, 10)
    assert [r.verdict for r in ok.rows if r.verdict] == ["PASS", "PASS", "PASS"]
    assert "median of trials 11-40 / of the last 30" in ok.rows[1].what
    bad = bench.soak_section({**steady, "workers": [_soak_samples(150, 1.0, 2.0)] * 2}, 300, 10)
    assert [r.verdict for r in bad.rows if r.verdict] == ["FAIL", "FAIL", "FAIL"]
    assert "+280.0 MB" in bad.rows[5].value  # 2 MB a trial from trial 10 to trial 150
