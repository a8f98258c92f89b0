"""The search part's table: each sampler's median best and first trial below the goal."""

from __future__ import annotations

from benchmarks import search


def test_search_table_gives_median_best_and_first_trial_below_the_goal():
    runs = {
        "tpe": [[1e-2, None, 5e-5], [2e-3, 9e-5, 1e-5], [3e-3, 1e-3, 2e-4]],
        "gp": "not run: GPSampler needs torch (pip install 'sweep[gp]')",
    }
    rows = {r.what: r.value for r in search.search_section(runs, 3, 3).rows}
    assert rows["tpe"].startswith("5.00e-05 (seeds: 5.0e-05, 1.0e-05, 2.0e-04)")
    assert rows["tpe"].endswith("first < 1e-04 at trial 3, 2, never")
    assert rows["gp"].startswith("not run: GPSampler needs torch")
