"""The peers part: its table, and a peer pip cannot install (the peers themselves need PyPI:
`make bench ARGS="--only peers"` runs them, docs/benchmarks.md keeps the table)."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks import peers


def test_each_peer_is_compared_with_our_wall_time_against_the_target():
    results = {
        "sweep": (20.0, [3e-4, 1e-5]),
        "KerasTuner": (300.0, [2e-4, math.nan]),
        "Ray Tune": (200.0, [5e-5]),
        "Other": "not run: pip install other failed: no matching distribution",
    }
    rows = {r.what: r for r in peers.peers_section(results, 10, 50).rows}
    assert rows["sweep"].value == "20 s, best val MSE 1.00e-05 (2 full trials)"
    assert rows["KerasTuner"].value.startswith("300 s, best val MSE 2.00e-04")
    assert (
        rows["KerasTuner wall time / sweep's"].value,
        rows["KerasTuner wall time / sweep's"].verdict,
    ) == ("15.0x", "PASS")
    assert (
        rows["Ray Tune wall time / sweep's"].value,
        rows["Ray Tune wall time / sweep's"].verdict,
    ) == ("10.0x", "FAIL")
    assert rows["Other"].value.startswith("not run: pip install other failed")
    assert "Other wall time / sweep's" not in rows


def test_a_peer_that_cannot_be_installed_is_a_reason_not_a_crash(tmp_path: Path):
    reason = peers.peer_python(tmp_path / "venv", ["sweep-no-such-package==0.0.1"])
    assert isinstance(reason, str) and reason.startswith(
        "not run: pip install sweep-no-such-package"
    )
    assert not (tmp_path / "venv" / ".installed").exists()
