"""The workers part's table: each study size end to end, and the trials' span, to its target."""

from __future__ import annotations

from benchmarks import workers


def test_workers_table_holds_each_size_to_its_target():
    def run(wall: float, span: float, n: int = 12) -> dict:
        return {"trials": n, "span": span, "wall": wall, "runs": 2}

    sizes = {4: (run(10.0, 3, 4), run(9.0, 2, 4)), 12: (run(18.0, 12), run(12.0, 6.5))}
    fresh = {12: (run(21.0, 12), run(15.5, 6.5))}
    rows = {r.what: r for r in workers.workers_section(sizes, 50, fresh).rows}
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
    slower = workers.workers_section({4: (run(10.0, 3, 4), run(10.5, 2, 4))}, 50)
    assert slower.rows[0].verdict == "FAIL"  # never slower than one worker, at any size
