"""data=npy: memory-mapped files streamed to training, never read whole, exactly again."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sweep.core.errors import ConfigError
from sweep.train.data import file_fingerprint, from_npy, streamed

ROOT = Path(__file__).resolve().parents[2]


def write_npy(folder: Path, rows: int, features: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """x [rows, features] float32 and y = a linear map of x, written a block at a time (the
    test process never holds a big x either)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(features, 1)).astype(np.float32)
    x = np.lib.format.open_memmap(folder / "x.npy", "w+", np.float32, (rows, features))
    y = np.lib.format.open_memmap(folder / "y.npy", "w+", np.float32, (rows, 1))
    for a in range(0, rows, 65536):
        block = rng.normal(size=(min(65536, rows - a), features)).astype(np.float32)
        x[a : a + len(block)], y[a : a + len(block)] = block, block @ w
    x.flush(), y.flush()
    del x, y
    return folder / "x.npy", folder / "y.npy"


def test_npy_and_npz_map_the_same_arrays_split_in_file_order(tmp_path: Path):
    xp, yp = write_npy(tmp_path, 200)
    x, y = np.load(xp), np.load(yp)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    pair, packed = from_npy(str(xp), str(yp)), from_npy(str(tmp_path / "xy.npz"))
    for d in (pair, packed):
        assert all(streamed(s) for s in (d.train, d.val, d.test))  # views of the file, not copies
        assert [len(s.x) for s in (d.train, d.val, d.test)] == [160, 20, 20]
        np.testing.assert_array_equal(d.val.x, x[160:180])
        assert d.input_shape == (8,) and d.output_dim == 1
    assert [s.digest() for s in (pair.train, pair.val)] == [
        s.digest() for s in (packed.train, packed.val)
    ]
    assert set(pair.source["files"]) == {"x", "y"} and set(packed.source["files"]) == {"npz"}


@pytest.mark.parametrize(
    ("make", "kwargs", "said"),
    [
        ("compressed", {}, "is compressed, which cannot be memory-mapped"),
        ("pair", {"standardize": True}, "data=npy streams the files as they are"),
        ("pair", {"y": None}, "holds the inputs only"),
        ("pair", {"y": "nope.npy"}, "data.y='nope.npy': no such file"),
        ("pair", {"val_fraction": 0.0}, "leave no training or validation rows"),
    ],
)
def test_files_that_cannot_be_streamed_are_one_line(tmp_path: Path, make, kwargs, said):
    xp, yp = write_npy(tmp_path, 50)
    args = {"x": str(xp), "y": str(yp)}
    if make == "compressed":
        np.savez_compressed(tmp_path / "c.npz", x=np.load(xp), y=np.load(yp))
        args = {"x": str(tmp_path / "c.npz"), "y": None}
    with pytest.raises(ConfigError, match=re.escape(said)) as err:
        from_npy(**{**args, **kwargs})
    assert "\n" not in str(err.value)


def test_the_fingerprint_reads_only_the_ends_and_sees_a_rewrite(tmp_path: Path):
    xp, yp = write_npy(tmp_path, 300_000)  # 9.6 MB: more than the two MB it hashes
    before = file_fingerprint(xp)
    assert before["bytes"] == xp.stat().st_size
    write_npy(tmp_path, 300_000, seed=1)  # same size, shape and dtype; other rows
    assert file_fingerprint(xp)["edges_sha256"] != before["edges_sha256"]


def test_streamed_training_is_exact_again_and_falls_back_to_fit_on_a_pydataset(tmp_path: Path):
    from keras.optimizers import SGD

    from sweep.train.loop import configure_tensorflow, reset_state, train
    from sweep.train.model import build_mlp
    from tests.problem_models import numpy_inside

    xp, yp = write_npy(tmp_path, 500)
    data = from_npy(str(xp), str(yp))
    configure_tensorflow(None, deterministic=True)
    runs = []
    for _ in range(2):
        reset_state(0)
        model = build_mlp(2, 8, "tanh", input_shape=data.input_shape)
        runs.append(train(model, SGD(0.05), data, 3, 64, 0))
    assert runs[0].history == runs[1].history and runs[0].metrics == runs[1].metrics
    assert runs[0].fallback is None and runs[0].history[-1].val_loss < runs[0].history[0].val_loss
    reset_state(0)
    fell = train(numpy_inside(8, 1), SGD(0.05), data, 3, 64, 0, jit_compile=True)
    assert fell.fallback and len(fell.history) == 3
    assert fell.history[-1].train_loss < fell.history[0].train_loss
    assert np.isfinite(fell.metrics["test_mse"])


# One epoch over a file bigger than BOUND_MB, in a fresh process: its peak RSS may grow by less
# than the file holds. TensorFlow's own start-up is paid first, on a small file of the same shape.
RSS_SCRIPT = """
import json, sys
from pathlib import Path
from keras.optimizers import SGD
from sweep.train.data import from_npy
from sweep.train.loop import configure_tensorflow, reset_state, train
from sweep.train.model import build_mlp

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

configure_tensorflow(None, True)
small, big = sys.argv[1:3]
for folder in (small, big):
    before = hwm()
    data = from_npy(f"{folder}/x.npy", f"{folder}/y.npy", val_fraction=0.02, test_fraction=0.02)
    reset_state(0)
    result = train(build_mlp(1, 8, "tanh", input_shape=data.input_shape), SGD(0.01), data,
                   1, 4096, 0)
print(json.dumps({"growth": hwm() - before, "hwm": hwm(), "memmap": type(data.train.x).__name__,
                  "loss": result.history[-1].train_loss}))
"""
BOUND_MB = 96


def test_an_epoch_over_a_file_bigger_than_the_bound_keeps_peak_rss_under_it(tmp_path: Path):
    write_npy(tmp_path / "small", 20_000, features=64)
    xp, _ = write_npy(tmp_path / "big", 800_000, features=64)  # 205 MB of inputs
    assert xp.stat().st_size > 2 * BOUND_MB * 2**20
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RSS_SCRIPT), str(tmp_path / "small"),
         str(tmp_path / "big")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["memmap"] == "memmap" and np.isfinite(seen["loss"])
    assert seen["growth"] < BOUND_MB, seen


# --------------------------------------------------------------------------- end to end


def trial_runs(store: Path) -> list:
    from sweep.tracking import Reader

    client = Reader(f"sqlite:///{store}/mlflow.db").client
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string="tags.`sweep.kind` = 'trial'")


@pytest.mark.slow
def test_an_npy_sweep_reruns_identical_and_a_changed_file_is_refused(tmp_path: Path, capsys):
    from sweep.cli import runner
    from sweep.tracking import Reader

    xp, yp = write_npy(tmp_path / "data", 600)
    store = tmp_path / "store"
    args = ["sweep", "data=npy", f"data.x={xp}", f"data.y={yp}", "search.n_trials=2",
            "trainer.epochs=3", "trainer.batch_size=64", f"paths.store={store}"]  # fmt: skip
    assert runner.main(args) == 0, capsys.readouterr().err
    run = trial_runs(store)[0]
    record = json.loads(Reader(f"sqlite:///{store}/mlflow.db").artifact_text(run, "replay.json"))
    assert set(record["data"]["files"]) == {"x", "y"}
    assert record["data"]["files"]["x"]["bytes"] == xp.stat().st_size
    capsys.readouterr()
    assert runner.main(["rerun", run.info.run_id, "--store", str(store)]) == 0
    assert re.search(r"^rerun [0-9a-f]{32}: IDENTICAL$", capsys.readouterr().out, re.M)
    write_npy(tmp_path / "data", 600, seed=1)
    assert runner.main(["rerun", run.info.run_id, "--store", str(store)]) == 2
    assert "has changed since" in capsys.readouterr().err
