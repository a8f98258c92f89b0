"""The peers part: the same study through `make sweep`, KerasTuner and Ray Tune, side by side.

Why: the project's claim is that a whole sweep is many times faster than the tools users already
know. The study is the tutorial's space (depth, width, activation, learning rate) on the same sine
splits, N trials of E epochs, held-out validation points, one MLflow run per trial with its
per-epoch losses; each tool is timed from the shell, start-up included, and scored by the best
full-length trial's last-epoch validation MSE (as `make sweep` scores a trial).

Opt-in (`--only peers`): each peer runs in a virtualenv the bench makes under --peers-venvs,
sharing the project's TensorFlow, Keras and MLflow, with only the peer installed on top; a peer
that cannot be installed is one row saying why, not a failure of the bench.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import (
    ROOT,
    TARGETS,
    Row,
    Section,
    clean_env,
    compose_cfg,
    say,
    store_overrides,
    verdict,
)

WHAT = "the same study through sweep, KerasTuner and Ray Tune with OptunaSearch"
SCRIPTS = Path(__file__).resolve().parent / "peer_scripts"
# Each peer: its script and what its virtualenv installs (versions pinned: a table compares).
PEERS = {
    "KerasTuner": ("kerastuner_study.py", ("keras-tuner==1.4.*", "tensorboard")),  # it imports it
    "Ray Tune": ("raytune_study.py", ("ray[tune]==2.60.*",)),
}
TIMEOUT = 3600  # seconds for one peer's whole study


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The study every tool runs, and where the peers' virtualenvs are kept between runs."""
    p.add_argument("--peers-trials", type=int, default=10, help="trials per study (peers part)")
    p.add_argument("--peers-epochs", type=int, default=50, help="epochs per trial (peers part)")
    p.add_argument(
        "--peers-venvs", default=str(ROOT / "bench-output" / "peer-venvs"),
        help="folder of the peers' virtualenvs, made once and reused",
    )  # fmt: skip


def run(args: argparse.Namespace, store: Path) -> Section:
    """Our sweep, then each peer, on the same data file and study size."""
    data = write_data(store / "sine.npz", args.set)
    results = {"sweep": ours(store / "sweep", args.peers_trials, args.peers_epochs, args.set)}
    for name, (script, requirements) in PEERS.items():
        python = peer_python(Path(args.peers_venvs) / slug(name), requirements)
        if isinstance(python, str):
            results[name] = python
            continue
        results[name] = peer(
            python, script, data, store / slug(name), args.peers_trials, args.peers_epochs
        )
    return peers_section(results, args.peers_trials, args.peers_epochs)


def slug(name: str) -> str:
    """A peer's folder name."""
    return name.lower().replace(" ", "-")


def write_data(path: Path, extra: Sequence[str]) -> Path:
    """The project's own train and validation splits (conf/data), for the peers to load."""
    import numpy as np

    from sweep.train.data import dataset_for

    data = dataset_for(compose_cfg(path.parent / "compose", *extra))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=data.train.x, y_train=data.train.y, x_val=data.val.x, y_val=data.val.y)
    return path


def ours(store: Path, trials: int, epochs: int, extra: Sequence[str]) -> tuple[float, list[float]]:
    """`python -m sweep sweep` from the shell on fresh stores: wall seconds, complete values."""
    import optuna

    cmd = [sys.executable, "-m", "sweep", "sweep", f"search.n_trials={trials}"]
    cmd += [f"trainer.epochs={epochs}", *store_overrides(store), *extra]
    say(f"  peers part: sweep, {trials} trials of {epochs} epochs")
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=clean_env(), check=True, capture_output=True, timeout=TIMEOUT)
    seconds = time.perf_counter() - t0
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{store}/optuna.db")
    return seconds, [t.value for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])]


def peer_python(venv: Path, requirements: Sequence[str]) -> Path | str:
    """The peer's interpreter: a virtualenv that sees the project's packages (a .pth file) with
    the peer installed over them; made once. A reason instead when pip cannot install it."""
    python, stamp = venv / "bin" / "python", venv / ".installed"
    wanted = "\n".join(requirements)
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    say(f"  peers part: making {venv} ({', '.join(requirements)})")
    made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True)
    if made.returncode != 0:
        return f"not run: could not make a virtualenv: {_last_line(made.stderr)}"
    site = subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    Path(site, "_sweep_project.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *requirements],
        capture_output=True,
        timeout=1800,
    )
    if pip.returncode != 0:
        return f"not run: pip install {' '.join(requirements)} failed: {_last_line(pip.stderr)}"
    stamp.write_text(wanted)
    return python


def peer(
    python: Path, script: str, data: Path, store: Path, trials: int, epochs: int
) -> tuple[float, list[float]] | str:
    """One peer's study from the shell: wall seconds and its full-length trials' values."""
    store.mkdir(parents=True, exist_ok=True)
    say(f"  peers part: {script}, {trials} trials of {epochs} epochs")
    cmd = [str(python), str(SCRIPTS / script), str(data), str(store), str(trials), str(epochs)]
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd, cwd=store, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    seconds = time.perf_counter() - t0
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("PEER-RESULT ")]
    values = json.loads(lines[-1].removeprefix("PEER-RESULT "))["values"] if lines else []
    if out.returncode != 0 or not values:  # KerasTuner logs a failed trial's error and goes on
        return f"failed (exit {out.returncode}, no trial finished): {_last_line(out.stderr)}"
    return seconds, values


def _last_line(text: bytes | str) -> str:
    """The last non-empty line of a tool's error output: the one that says what went wrong."""
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "no output")


def peers_section(
    results: dict[str, tuple[float, list[float]] | str], trials: int, epochs: int
) -> Section:
    """A row per tool (wall time, best value), and per peer its time against ours with a verdict."""
    sec = Section(f"Peers: the same {trials}-trial study of {epochs} epochs, from the shell")
    for name, result in results.items():
        if isinstance(result, str):
            sec.rows.append(Row(name, result))
            continue
        seconds, values = result
        best = min((v for v in values if math.isfinite(v)), default=math.nan)
        sec.rows.append(
            Row(name, f"{seconds:.0f} s, best val MSE {best:.2e} ({len(values)} full trials)")
        )
    base = results.get("sweep")
    for name, result in results.items():
        if name == "sweep" or isinstance(result, str) or isinstance(base, str) or base is None:
            continue
        ratio = result[0] / base[0]
        target = TARGETS["peers"]
        sec.rows.append(
            Row(
                f"{name} wall time / sweep's",
                f"{ratio:.1f}x",
                f">= {target:g}x",
                verdict(ratio >= target),
            )
        )
    sec.notes.append(
        "each tool's whole study timed from the shell (interpreter start-up included), on the same "
        "sine splits and space, one MLflow run per trial with per-epoch losses; sweep with its "
        "defaults (TPE, median pruner, 1 worker, models and plots logged), KerasTuner's Bayesian "
        "tuner, Ray Tune with OptunaSearch and ASHA on all cores; best = the lowest last-epoch "
        "validation MSE of a trial that ran every epoch"
    )
    return sec
