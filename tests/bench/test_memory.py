"""The memory part: RSS sampled after every trial, growth held under its target."""

from __future__ import annotations

from pathlib import Path

from benchmarks import memory
from tests.bench import TINY


def test_memory_worker_samples_rss_after_every_trial(tmp_path: Path):
    samples = memory.memory_worker(str(tmp_path), trials=3, epochs=1, overrides=TINY)
    assert [s["trial"] for s in samples] == [0, 1, 2, 3]
    assert all(s["VmHWM"] >= s["VmRSS"] > 50 for s in samples)
    sec = memory.memory_section(samples, 1)
    assert "growth from trial 3 to trial 3" in sec.rows[-1].what  # fewer than 5: clamped


def test_memory_table_fails_on_growth():
    samples = [{"trial": t, "VmRSS": 500 + 3 * t, "VmHWM": 600 + 3 * t} for t in range(31)]
    sec = memory.memory_section(samples, 10)
    assert sec.rows[-1].value == "+75.0 MB" and sec.rows[-1].verdict == "FAIL"
