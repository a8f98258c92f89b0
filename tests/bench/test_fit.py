"""The fit part: `model.fit` and our loop timed seed by seed, held to the speed and MSE targets."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks import fit
from tests.bench import TINY


def test_fit_part_times_model_fit_and_our_loop_seed_by_seed(tmp_path: Path):
    r = fit.bench_fit(seeds=2, epochs=1, xla=False, store=tmp_path, overrides=TINY)
    assert set(r) == {"fit_s", "fit_mse", "loop_s", "loop_mse"}
    assert all(len(v) == 2 and all(x > 0 and math.isfinite(x) for x in v) for v in r.values())
    # one epoch of the same algorithm from the same seed: comparable losses
    assert 0.2 < r["fit_mse"][0] / r["loop_mse"][0] < 5


def test_fit_table_passes_and_fails_on_the_targets():
    fast = {"fit_s": [4.0] * 3, "loop_s": [0.3] * 3, "fit_mse": [0.003] * 3}  # 13.3x
    ok = fit.fit_section({**fast, "loop_mse": [0.0033] * 3}, 50)
    assert [r.verdict for r in ok.rows if r.verdict] == ["PASS", "PASS"]
    slow = {**fast, "loop_s": [1.0] * 3, "loop_mse": [0.006] * 3, "xla_s": [0.3] * 3}
    bad = fit.fit_section({**slow, "xla_mse": [0.003] * 3}, 50)
    verdicts = [r.verdict for r in bad.rows if r.verdict]
    assert verdicts == ["FAIL", "FAIL", "faster"]  # 4x; MSE factor 2; XLA faster
