"""The engines part: its commands and its table (the runs themselves are `make bench`'s)."""

from __future__ import annotations

from benchmarks import engines


def test_each_engine_runs_the_same_overrides_with_its_own_worker_count():
    assert engines.command("sweep", 2, ["a=1"])[-3:] == ["sweep", "search.jobs=2", "a=1"]
    ray = engines.command("ray", 1, ["a=1"])
    assert ray[3:] == ["launch", "--engine", "ray", "--address", "local", "--workers", "1",
                       "--cpus", "2", "a=1"]  # fmt: skip
    assert engines.command("ray", 2, [], cores=2)[-2:] == ["--cpus", "1"]  # as JOBS=2 pins


def test_ray_runs_are_compared_with_as_many_sweep_workers():
    results = {
        "JOBS=1": (30.0, 24.0, 6.0),
        "JOBS=2": (22.0, 32.0, 7.0),
        "1 Ray worker": (36.0, 24.0, 12.5),
        "2 Ray workers": "not run: pip install -e '.[ray]'",
    }
    rows = {r.what: r.value for r in engines.engines_section(results, 12, 20).rows}
    assert rows["JOBS=1"] == "30.0 s wall (6.0 s to the first trial), 24 trials/min"
    assert rows["1 Ray worker / JOBS=1"] == "pace 1.00x, wall 1.20x (start-up +6.5 s)"
    assert rows["2 Ray workers"].startswith("not run")
    assert "2 Ray workers / JOBS=2" not in rows
