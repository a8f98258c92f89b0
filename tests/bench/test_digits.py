"""The digits part: `model.fit` and our loop on a classification problem, speed and accuracy."""

from __future__ import annotations

from pathlib import Path

from benchmarks import digits


def test_digits_part_times_model_fit_and_our_loop_on_a_classification_problem(tmp_path: Path):
    r = digits.bench_digits(seeds=1, epochs=1, store=tmp_path)
    assert all(len(v) == 1 and v[0] > 0 for v in r.values())
    assert all(0.05 < r[k][0] <= 1 for k in ("fit_acc", "loop_acc"))  # 10 classes: chance 0.1
    assert [row.what for row in digits.digits_section(r, 1).rows][2] == "speed-up"
