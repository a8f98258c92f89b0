"""The models part's table: each model's speed-up and the streamed file's peak RSS, held to their
targets (the measuring itself trains three models and writes a file bigger than memory)."""

from __future__ import annotations

from benchmarks import models


def speeds(fit: float, loop: float) -> dict[str, list[float]]:
    return {
        "fit_s": [fit] * 3, "loop_s": [loop] * 3, "fit_epoch": [0.2] * 3,
        "loop_epoch": [0.05] * 3, "fit_val": [0.1] * 3, "loop_val": [0.1] * 3,
    }  # fmt: skip


def test_each_model_passes_at_2x_and_fails_below():
    table = {"cnn": speeds(4.0, 2.0), "lstm": speeds(4.0, 2.1), "conv1d": speeds(9.0, 1.0)}
    memory = {"file_mb": 1536.0, "peak_mb": 1100.0, "seconds": 30.0}
    sec = models.models_section(table, memory, 50, 1280)
    assert [r.verdict for r in sec.rows] == ["PASS", "FAIL", "PASS", "PASS"]
    assert "data=sine_sequence model=lstm" in sec.rows[1].what
    assert "4.00 s / 2.10 s = 1.9x; 200 / 50 ms = 4.0x" in sec.rows[1].value
    assert sec.rows[-1].value == "1100 MB"


def test_the_memory_row_fails_over_the_budget_or_on_a_file_that_fits_in_it():
    table = {"cnn": speeds(4.0, 1.0)}
    over = models.models_section(table, {"file_mb": 1536, "peak_mb": 1300, "seconds": 1}, 50, 1280)
    small = models.models_section(table, {"file_mb": 64, "peak_mb": 900, "seconds": 1}, 50, 1280)
    assert over.rows[-1].verdict == small.rows[-1].verdict == "FAIL"
