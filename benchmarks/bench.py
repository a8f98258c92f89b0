"""`make bench`: the speed targets (issues 3, 13, 15), measured side by side in one run here.

Seven parts, each runnable alone (`--only fit,trial,workers,memory,digits,search,soak`):
  fit      the tutorial's `model.fit` against our compiled loop (and the loop with XLA), 50 epochs,
           seed by seed, back to back in alternating order so drift of a shared machine cancels;
  trial    study trials of the tutorial's configuration with all tracking into a temporary SQLite
           MLflow store, side by side with the same trials untracked, the bare loop and
           `model.fit`: a whole trial against `model.fit`, and where its time goes;
  workers  fixed 4-, 12- and 30-trial studies run by `python -m sweep sweep` with search.jobs=1
           and =2, end to end, each a new study in existing stores, and the middle size once
           more on fresh stores (a project's first sweep);
  memory   a worker's resident memory over 30 study trials (VmRSS after each, VmHWM at the end);
  digits   `model.fit` against our compiled loop on `data=digits` (64 -> 10 classes, softmax
           cross-entropy), 50 epochs, seed by seed: speed and validation accuracy.
  search   search quality: TPE, random, GP and CMA-ES on the tutorial's space and budget, the best
           validation MSE after 30 trials (median over 3 sampler seeds) and the first trial < 1e-4.
  soak     a 300-trial study on two spawned workers and the embedded stores (SQLite study and
           MLflow store, artifacts on disk), the tutorial's configuration in every trial: per-trial
           CPU (and wall) time at the end against the start, each worker's RSS growth, the stores.
Not a test: it prints a markdown table with PASS/FAIL per target and writes it to --out.
Run it as `python benchmarks/bench.py [--only ...]` (`make bench`); it is not part of the package.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
# Every trial of the trial and workers parts is the tutorial's configuration (no search space),
# so one worker and two workers do exactly the same work.
FIXED_SPACE = ("~search.space.model", "~search.space.optimizer")
TARGETS = {
    "speedup": 12.0,  # the bare loop against model.fit (issue 15)
    "mse_ratio": 1.3,
    "trial_vs_fit": 8.0,  # one whole tracked trial against model.fit of the same epochs
    "hooks": 0.10,  # the per-epoch hooks on top of the bare loop
    "outside": 0.15,  # everything outside training, as a share of training
    "overhead": 0.30,  # tracking and artifacts, as a share of training
    "scaling": 1.7,  # trials per minute over the trials' span, 2 workers against 1
    "growth_mb": 50.0,
}
# search.jobs=2 against search.jobs=1, end to end from the shell, by study size (issue 15);
# a size not listed must simply not be slower.
WORKER_TARGETS = {12: 1.4, 30: 1.7}


@dataclass
class Row:
    """One line of the table: what, measured value, target, PASS/FAIL (or blank)."""

    what: str
    value: str
    target: str = ""
    verdict: str = ""


@dataclass
class Section:
    """One part's table: a bold title, its rows, and notes printed in italics under it."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def compose_cfg(store: Path, *overrides: str) -> DictConfig:
    """The project's real config with every store under `store` (never the repo's mlruns/)."""
    from hydra import compose, initialize_config_dir

    from sweep.config import prepare

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw = compose(config_name="config", overrides=[*store_overrides(store), *overrides])
    return prepare(raw)


def store_overrides(store: Path) -> list[str]:
    """Pin both stores to `store`, whatever MLFLOW_TRACKING_URI says in this shell."""
    return [
        f"paths.store={store}",
        f"tracking.uri=sqlite:///{store}/mlflow.db",
        f"search.storage=sqlite:///{store}/optuna.db",
    ]


def open_bench_sweep(store: Path, *overrides: str) -> Any:
    """A real study (and its parent run) on `store`, opened as a worker opens it."""
    from sweep.study import open_sweep

    return open_sweep(compose_cfg(store, *overrides), ["bench"])


@contextmanager
def background_writes() -> Iterator[None]:
    """Artifacts written by the background thread, as in `run_worker`; always switched off after."""
    from sweep.tracking import write_in_background

    write_in_background(True)
    try:
        yield
    finally:
        write_in_background(False)


def clean_env(**extra: str) -> dict[str, str]:
    """This shell's environment without MLFLOW_* (the bench must not write to a user's server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def verdict(ok: bool) -> str:
    """The result column of a row that has a target."""
    return "PASS" if ok else "FAIL"


def memory_mb() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process, in MB, from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) / 1024
    return out


def load() -> str:
    """The 1/5/15-minute load averages: the machine is shared, so every table records them."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


# --------------------------------------------------------------------------- 1. fit vs loop


def timed_training(seed: int, fit: Callable[[Any], float]) -> tuple[float, float]:
    """Seconds and final training MSE of `fit` on the tutorial's 4x20 tanh MLP, fresh from `seed`.

    Only `fit` is timed: both contenders start from the same untrained model.
    """
    from sweep.model import build_mlp
    from sweep.training import reset_state

    reset_state(seed)
    model = build_mlp(4, 20, "tanh")
    start = time.perf_counter()
    train_mse = fit(model)
    return time.perf_counter() - start, train_mse


def time_fit(seed: int, data: Any, epochs: int, batch_size: int) -> tuple[float, float]:
    """The tutorial's compile + fit + evaluate: the reference our loop must beat."""
    from sweep.training import fit_like_tutorial

    return timed_training(seed, lambda model: fit_like_tutorial(model, data, epochs, batch_size))


def time_loop(seed: int, data: Any, epochs: int, batch_size: int, jit: bool) -> tuple[float, float]:
    """Our compiled loop, tracing and the optimizer's creation included, as a trial pays them."""
    from sweep.backend import keras
    from sweep.training import train

    def fit(model: Any) -> float:
        opt = keras.optimizers.SGD(learning_rate=0.01)
        return train(model, opt, data, epochs, batch_size, seed, jit_compile=jit).train_mse

    return timed_training(seed, fit)


def bench_fit(
    seeds: int, epochs: int, xla: bool, store: Path, overrides: Sequence[str] = ()
) -> dict[str, list[float]]:
    """Per seed, model.fit, our loop and our loop under XLA back to back, order rotating."""
    from sweep.data import dataset_for
    from sweep.training import configure_tensorflow

    cfg = compose_cfg(store, *overrides)
    configure_tensorflow(cfg.trainer.threads, cfg.trainer.deterministic)
    data, bs = dataset_for(cfg), cfg.trainer.batch_size
    runs: dict[str, Callable[[int], tuple[float, float]]] = {
        "fit": lambda s: time_fit(s, data, epochs, bs),
        "loop": lambda s: time_loop(s, data, epochs, bs, False),
    }
    if xla:
        runs["xla"] = lambda s: time_loop(s, data, epochs, bs, True)
    return rotated(runs, seeds, "fit", "mse")


def rotated(
    runs: dict[str, Callable[[int], tuple[float, float]]], seeds: int, part: str, metric: str
) -> dict[str, list[float]]:
    """Every contestant once per seed, in a rotating order, so a machine's drift favours none:
    `<name>_s` (seconds) and `<name>_<metric>` lists."""
    out: dict[str, list[float]] = {f"{k}_{m}": [] for k in runs for m in ("s", metric)}
    names = list(runs)
    for seed in range(seeds):
        for name in names[seed % len(names) :] + names[: seed % len(names)]:
            seconds, value = runs[name](seed)
            out[f"{name}_s"].append(seconds)
            out[f"{name}_{metric}"].append(value)
            say(f"  {part} part: seed {seed} {name:<4s} {seconds:6.2f} s  {metric} {value:.4f}")
    return out


def fit_section(r: dict[str, list[float]], epochs: int) -> Section:
    """Medians over seeds: a shared machine's one slow seed should not decide the verdict."""
    med = {k: statistics.median(v) for k, v in r.items()}
    speedup = med["fit_s"] / med["loop_s"]
    ratio = max(med["fit_mse"], med["loop_mse"]) / min(med["fit_mse"], med["loop_mse"])
    n = len(r["fit_s"])
    sec = Section(f"1. `model.fit` vs our compiled loop ({epochs} epochs, median of {n} seeds)")
    sec.rows += [
        Row("`model.fit` as the tutorial (compile, fit, evaluate)", f"{med['fit_s']:.2f} s"),
        Row("our loop (`sweep.training.train`, tracing included)", f"{med['loop_s']:.2f} s"),
        Row("speed-up", f"{speedup:.1f}x", f">= {TARGETS['speedup']:g}x",
            verdict(speedup >= TARGETS["speedup"])),
        Row("final training MSE: `model.fit` / our loop",
            f"{med['fit_mse']:.4f} / {med['loop_mse']:.4f} (factor {ratio:.2f})",
            f"within {TARGETS['mse_ratio']:g}x", verdict(ratio <= TARGETS["mse_ratio"])),
    ]  # fmt: skip
    if "xla_s" in med:
        faster = med["xla_s"] < med["loop_s"]
        sec.rows.append(
            Row("our loop with XLA (`trainer.jit_compile=true`; seeds after the first reuse the "
                "compiled graph)", f"{med['xla_s']:.2f} s, train MSE {med['xla_mse']:.4f}",
                "opt-in: other floating-point results, a compile per new architecture",
                "faster" if faster else "slower")
        )  # fmt: skip
    sec.notes.append(
        "per-seed seconds: "
        + "; ".join(
            f"{k[:-2]} " + ", ".join(f"{v:.2f}" for v in r[k]) for k in r if k.endswith("_s")
        )
    )
    return sec


# --------------------------------------------------------------------------- 2. one trial


# A tracked trial's phases, as (label, module, attribute); nested: inside the one before it.
PHASES = (
    ("ask", "sweep.worker", "next_trial"),
    ("run start", "sweep.tracking.runs:Tracker", "start_run"),
    ("model build", "sweep.pipeline", "build"),
    ("params", "sweep.tracking.runs:Run", "log_params"),
    ("training", "sweep.pipeline", "train"),
    ("final metrics", "sweep.training", "final_metrics"),  # nested in training
    ("predict_ms", "sweep.pipeline", "predict_ms"),
    ("plots (main thread)", "sweep.pipeline", "log_plots"),
    ("model logging", "sweep.tracking.runs:Run", "log_model"),
    ("waiting for background writes", "sweep.tracking.runs:Run", "written"),
    ("run end", "sweep.tracking.runs:Run", "end"),
    ("tell", "sweep.worker", "tell"),
)
NESTED = {"final metrics"}


@contextmanager
def phase_clock(seconds: dict[str, float]) -> Iterator[None]:
    """Add each phase's wall seconds to `seconds` while the block runs: every function of
    PHASES wrapped in a timer (a measuring instrument for the benchmark only), restored after."""
    import importlib

    saved = []
    for label, where, name in PHASES:
        module, _, cls = where.partition(":")
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner
        original = getattr(owner, name)

        def timed(*args: Any, _f: Callable = original, _label: str = label, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                seconds[_label] = seconds.get(_label, 0.0) + time.perf_counter() - start

        saved.append((owner, name, original))
        setattr(owner, name, timed)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def bench_trial(store: Path, measured: int, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Trials with `tracking=mlflow` and `tracking=none`, the bare loop and `model.fit`, side by
    side in alternating rounds, so a shared machine's drift favours none of them.

    One warm-up trial each, then two rounds of: a block of `measured // 2` tracked trials (each
    block timed until its last artifact is written), the same untracked, one bare loop (the same
    training with no hooks and no tracking) and one `model.fit` of the same epochs.
    """
    from sweep.tracking import Reader, warm_up

    sweeps = {m: _trial_sweep(store / m, m, measured, overrides) for m in ("mlflow", "none")}
    walls, ids, block = {"mlflow": 0.0, "none": 0.0}, [], max(1, measured // 2)
    bare, fit, phases = [], [], {}
    warm_up()  # as `run_worker` does
    with background_writes():
        first = _timed_trials(sweeps["mlflow"], 1)
        _timed_trials(sweeps["none"], 1)
        for _ in range(2):
            for mode, sweep in sweeps.items():
                clock = phase_clock(phases) if mode == "mlflow" else contextlib.nullcontext()
                with clock:
                    seconds, run_ids = _timed_trials(sweep, block)
                walls[mode] += seconds
                ids += run_ids if mode == "mlflow" else []
            bare.append(_bare_loop(sweeps["none"].cfg))
            fit.append(_fit_seconds(sweeps["none"].cfg))
    reader = Reader(sweeps["mlflow"].tracker.uri)
    n = 2 * block
    return {
        "first_wall": first[0],
        "first_train": _train_seconds(reader, first[1][0]),
        "wall": walls["mlflow"] / n,
        "wall_none": walls["none"] / n,
        "train": sum(_train_seconds(reader, i) for i in ids) / n,
        "bare": statistics.mean(bare),
        "fit": statistics.mean(fit),
        "n": n,
        "artifacts": sorted(reader.artifact_names(reader.run(ids[-1]))),
        "phases": {label: total / n for label, total in phases.items()},
    }


def _trial_sweep(store: Path, tracking: str, measured: int, overrides: Sequence[str]) -> Any:
    """A study sized for the warm-up trial plus two blocks, every trial the tutorial's."""
    n = 2 * max(1, measured // 2) + 1
    return open_bench_sweep(
        store, *FIXED_SPACE, *overrides, f"tracking={tracking}", f"search.n_trials={n}"
    )


def _train_seconds(reader: Any, run_id: str) -> float:
    """The loop's own time of one trial, as its run recorded it."""
    return reader.run(run_id).data.metrics["train_seconds"]


def _timed_trials(sweep: Any, n: int) -> tuple[float, list[str]]:
    """Seconds for `n` trials until their artifacts are written, and their MLflow run ids."""
    from sweep import worker
    from sweep.study import RUN_ATTR
    from sweep.tracking import drain

    start, ids = time.perf_counter(), []
    for _ in range(n):
        trial = worker.next_trial(sweep)
        worker.run_trial(sweep, trial)
        ids += [trial.user_attrs.get(RUN_ATTR)]
    drain()
    return time.perf_counter() - start, ids


def _bare_loop(cfg: DictConfig) -> float:
    """The same training with no hooks and no tracking: what the trial's hooks cost on top."""
    from sweep.data import dataset_for
    from sweep.objects import build
    from sweep.training import reset_state, train

    reset_state(cfg.seed)
    data = dataset_for(cfg)
    model = build(cfg.model, "model", input_dim=data.input_dim, output_dim=data.output_dim)
    opt = build(cfg.optimizer, "optimizer")
    t = cfg.trainer
    return train(model, opt, data, t.epochs, t.batch_size, cfg.seed).seconds


def _fit_seconds(cfg: DictConfig) -> float:
    """The tutorial's `model.fit` on the trial's model, data and epochs (the reference)."""
    from sweep.data import dataset_for
    from sweep.objects import build
    from sweep.training import fit_like_tutorial, reset_state

    reset_state(cfg.seed)
    data = dataset_for(cfg)
    model = build(cfg.model, "model", input_dim=data.input_dim, output_dim=data.output_dim)
    start = time.perf_counter()
    fit_like_tutorial(model, data, cfg.trainer.epochs, cfg.trainer.batch_size)
    return time.perf_counter() - start


def target_row(what: str, value: float, text: str, key: str, at_least: bool) -> Row:
    """A row whose value must reach TARGETS[key] (`at_least`) or stay under it."""
    goal = TARGETS[key]
    ok = value >= goal if at_least else value <= goal
    shown = f"{goal:g}x" if key not in ("hooks", "outside", "overhead") else f"{goal:.0%}"
    return Row(what, text, f"{'>=' if at_least else '<='} {shown}", verdict(ok))


def phase_text(phases: dict[str, float], wall: float) -> str:
    """`ask 17 · run start 14 · ... · other 30`: each phase's mean milliseconds in PHASES' order,
    the nested in brackets, and what no phase holds (the rest of the wall time)."""
    parts, covered = [], 0.0
    for label, _, _ in PHASES:
        ms = 1000 * phases.get(label, 0.0)
        parts.append(f"({label} {ms:.0f})" if label in NESTED else f"{label} {ms:.0f}")
        covered += 0.0 if label in NESTED else phases.get(label, 0.0)
    return " · ".join([*parts, f"other {1000 * (wall - covered):.0f}"])


def trial_section(r: dict[str, Any]) -> Section:
    """A whole trial against `model.fit`, and where its time goes beyond the bare loop."""
    added = (r["wall"] - r["wall_none"]) / r["train"]
    outside = r["wall"] / r["train"] - 1
    hooks = r["train"] / r["bare"] - 1
    sec = Section(
        "2. One trial with all tracking (tutorial configuration, temporary SQLite MLflow store)"
    )
    sec.rows += [
        Row("first trial in a fresh worker: wall / training",
            f"{r['first_wall']:.2f} s / {r['first_train']:.2f} s"),
        Row(f"per trial, mean of {r['n']}: wall with tracking / training",
            f"{r['wall']:.2f} s / {r['train']:.2f} s"),
        Row("per trial, same trials with `tracking=none`: wall", f"{r['wall_none']:.2f} s"),
        Row("`model.fit` of the same epochs (the tutorial's compile, fit, evaluate)",
            f"{r['fit']:.2f} s"),
        target_row("one trial with all tracking against `model.fit`", r["fit"] / r["wall"],
                   f"{r['fit'] / r['wall']:.1f}x", "trial_vs_fit", at_least=True),
        Row("the bare loop (the same training, no per-epoch hooks, no tracking)",
            f"{r['bare']:.2f} s ({r['fit'] / r['bare']:.1f}x faster than `model.fit`)"),
        target_row("the per-epoch hooks (pruning, loss metrics, progress) on the bare loop",
                   hooks, f"{hooks:+.0%}", "hooks", at_least=False),
        target_row("everything outside training (build, ask/tell, tracking, artifacts)",
                   outside, f"{outside:+.0%}", "outside", at_least=False),
        target_row("of which tracking and artifacts (wall - wall without tracking)", added,
                   f"{added:+.0%}", "overhead", at_least=False),
    ]  # fmt: skip
    if r.get("phases"):
        sec.rows.append(
            Row("a tracked trial by phase, mean ms", phase_text(r["phases"], r["wall"]))
        )
    sec.notes.append(
        "wall = a worker's time per trial, blocks of trials timed until every artifact is on "
        "disk: ask, model build, training, params, tags, per-epoch and final metrics, model, "
        "plots, config/overrides/replay files, tell, run end. training = the loop's own time "
        "(`train_seconds`: tracing, the epochs with the pruning, metric and progress hooks, "
        "final metrics); bare loop and `model.fit`: once per round, alternating with the "
        "trials. By phase: each phase's wall time in the tracked trials (the plots render on "
        "the background writer meanwhile, so the phases beside it run slower); other = ask to "
        "tell not in a phase (the heartbeat, the pruning flush, the progress line). Artifacts "
        "of the last trial: " + ", ".join(r["artifacts"])
    )
    return sec


# --------------------------------------------------------------------------- 3. workers


def bench_workers(
    where: Path,
    jobs: int,
    trials: int,
    epochs: int,
    overrides: Sequence[str] = (),
    study: str = "bench",
) -> dict[str, float]:
    """`python -m sweep sweep search.jobs=<jobs>` as study `study` on the stores under `where`
    (made by the command if they are not there yet); wall and the trials' span."""
    import optuna

    cmd = [
        sys.executable, "-m", "sweep", "sweep", *store_overrides(where), *FIXED_SPACE,
        *overrides, f"search.jobs={jobs}", f"search.n_trials={trials}",
        f"trainer.epochs={epochs}", f"search.study_name={study}",
    ]  # fmt: skip
    launched, start = dt.datetime.now(), time.perf_counter()  # Optuna's times are local
    proc = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True)
    wall, ended = time.perf_counter() - start, dt.datetime.now()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    loaded = optuna.load_study(study_name=study, storage=f"sqlite:///{where}/optuna.db")
    done = [t for t in loaded.trials if t.datetime_complete is not None and t.state.is_finished()]
    first, last = min(t.datetime_start for t in done), max(t.datetime_complete for t in done)
    return {
        "wall": wall,
        "span": (last - first).total_seconds(),
        "trials": len(done),
        "startup": (first - launched).total_seconds(),  # to the first trial's start
        "end": (ended - last).total_seconds(),  # the summary, the champion, the exit
    }


def existing_stores(where: Path) -> Path:
    """Both stores made at `where` (MLflow's schema, Optuna's tables, one study), as a project
    has them after its first sweep; a sweep there pays no migrations."""
    if not (where / "mlflow.db").exists():
        open_bench_sweep(where, *FIXED_SPACE, "search.study_name=first", "search.n_trials=1")
    return where


def best_workers(
    store: Path,
    repeats: int,
    trials: int,
    epochs: int,
    overrides: Sequence[str] = (),
    fresh: bool = False,
) -> tuple[dict[str, float], dict[str, float]]:
    """The fastest of `repeats` runs each: a shared machine only ever slows a run down.

    A new study in stores that exist already (`make sweep` after the project's first), or,
    `fresh`, on stores the command makes (the first sweep: MLflow migrates its schema).
    """
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for i in range(repeats):
        for jobs in (1, 2):
            if fresh:
                where, study = store / f"fresh-n{trials}-round{i}-jobs{jobs}", "bench"
            else:
                where = existing_stores(store / f"stores-jobs{jobs}")
                study = f"bench-n{trials}-round{i}"
            runs[jobs].append(bench_workers(where, jobs, trials, epochs, overrides, study))
            r = runs[jobs][-1]
            kind = " (fresh stores)" if fresh else ""
            say(f"  workers part: {trials} trials{kind}, round {i}, {jobs} worker(s): "
                f"{r['wall']:.1f} s wall, {r['span']:.1f} s of trials")  # fmt: skip
    one, two = (min(runs[j], key=lambda r: r["wall"]) for j in (1, 2))
    return {**one, "runs": len(runs[1])}, two


def workers_section(
    sizes: dict[int, tuple[dict, dict]],
    epochs: int,
    fresh: dict[int, tuple[dict, dict]] | None = None,
) -> Section:
    """End to end from the shell per study size (what a user waits for), a new study in
    existing stores and (`fresh`) on new ones, and trials per minute over the trials' span for
    the largest size (the workers' own pace, start-up aside)."""
    sec = Section(
        f"3. `make sweep JOBS=2` against `JOBS=1` (tutorial configuration, {epochs} epochs)"
    )
    cases = [(n, r, "a new study in existing stores") for n, r in sorted(sizes.items())]
    cases += [
        (n, r, "fresh stores (a project's first sweep)") for n, r in sorted((fresh or {}).items())
    ]
    for n, (one, two), where in cases:
        ratio = one["wall"] / two["wall"]
        goal = WORKER_TARGETS.get(n, 1.0)
        sec.rows.append(
            Row(f"{n} trials, end to end with start-up, {where}: 1 worker / 2 workers",
                f"{one['wall']:.1f} s / {two['wall']:.1f} s = {ratio:.2f}x",
                f">= {goal:g}x", verdict(ratio >= goal))
        )  # fmt: skip
    n = max(sizes)
    one, two = sizes[n]
    rate = {"1": per_minute(one, "span"), "2": per_minute(two, "span")}
    scaling = rate["2"] / rate["1"]
    sec.rows += [
        Row(f"{n} trials, 1 worker (`search.jobs=1`)", _rate_text(rate["1"], one)),
        Row(f"{n} trials, 2 workers (`search.jobs=2`)", _rate_text(rate["2"], two)),
        Row("2 workers / 1 worker over the trials' span", f"{scaling:.2f}x",
            f">= {TARGETS['scaling']:g}x", verdict(scaling >= TARGETS["scaling"])),
    ]  # fmt: skip
    if "startup" in one:
        sec.rows.append(
            Row(f"{n} trials: start-up to the first trial / last trial to exit, 1 and 2 workers",
                f"{one['startup']:.1f} s / {one['end']:.1f} s; "
                f"{two['startup']:.1f} s / {two['end']:.1f} s")
        )  # fmt: skip
    sec.notes.append(
        f"best of {int(one.get('runs', 1))} runs each, alternating 1 and 2 workers. wall = "
        "`python -m sweep sweep` from start to exit (Python, TensorFlow and MLflow start-up, "
        "the stores' creation where they are fresh, the trials, the summary); trials/min = "
        "trials / (last trial's end - first trial's start) from the Optuna study."
    )
    return sec


def per_minute(r: dict[str, float], seconds: str) -> float:
    """Trials per minute of one workers run over its `span` or its `wall` seconds."""
    return 60 * r["trials"] / r[seconds]


def _rate_text(rate: float, r: dict[str, float]) -> str:
    """The value cell of a workers row: the rate and the two times it comes from."""
    return f"{rate:.1f} trials/min ({r['span']:.1f} s of trials, {r['wall']:.1f} s wall)"


# --------------------------------------------------------------------------- 4. memory


def memory_worker(
    store: str, trials: int, epochs: int, overrides: Sequence[str] = ()
) -> list[dict[str, float]]:
    """In a fresh process: a real study's trials one after another, memory after each."""
    from sweep import worker
    from sweep.progress import Lines
    from sweep.tracking import drain

    sweep = open_bench_sweep(
        Path(store), *overrides, f"search.n_trials={trials}", f"trainer.epochs={epochs}"
    )
    samples = [{"trial": 0, **memory_mb()}]
    with background_writes():
        while (trial := worker.next_trial(sweep)) is not None:
            worker.run_trial(sweep, trial, Lines("  memory part: "))
            drain()
            samples.append({"trial": len(samples), **memory_mb()})
    return samples


def bench_memory(
    store: Path, trials: int, epochs: int, overrides: Sequence[str] = ()
) -> list[dict[str, float]]:
    """`memory_worker` in a spawned process, so the numbers are a fresh worker's own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        job = pool.submit(memory_worker, str(store / "memory"), trials, epochs, list(overrides))
        return job.result()


def memory_section(samples: list[dict[str, float]], epochs: int) -> Section:
    """Growth from trial 5 to 30, past the first trials' one-off allocations (clamped if fewer)."""
    at = {int(s["trial"]): s for s in samples}
    last = max(at)
    early, late = min(5, last), min(30, last)
    growth = at[late]["VmRSS"] - at[early]["VmRSS"]
    sec = Section(f"4. Worker memory over a study (default search space, {epochs} epochs a trial)")
    sec.rows += [
        Row(f"peak resident memory (VmHWM) after {last} trials", f"{at[last]['VmHWM']:.0f} MB"),
        Row(f"RSS after trial {early} / after trial {late}",
            f"{at[early]['VmRSS']:.0f} MB / {at[late]['VmRSS']:.0f} MB"),
        Row(f"growth from trial {early} to trial {late}", f"{growth:+.1f} MB",
            f"< {TARGETS['growth_mb']:g} MB", verdict(growth < TARGETS["growth_mb"])),
    ]  # fmt: skip
    sec.notes.append(
        f"every trial the worker ran counts ({last}: diverged ones fail and do not count towards "
        "search.n_trials). RSS after each (MB): "
        + ", ".join(f"{s['VmRSS']:.0f}" for s in samples[1:])
    )
    return sec


# --------------------------------------------------------------------------- search quality

SEARCH_SAMPLERS = ("tpe", "random", "gp", "cmaes")
SEARCH_GOAL = 1e-4


def search_values(store: Path, sampler: str, seed: int, trials: int, extra: Sequence[str]) -> list:
    """Each complete trial's validation MSE in trial order (None for pruned/failed), one study
    of the default space with tracking=none, run by the in-process worker."""
    from optuna.trial import TrialState

    from sweep.worker import run_worker

    sweep = open_bench_sweep(
        store / f"{sampler}-{seed}",
        "tracking=none",
        f"search/sampler={sampler}",
        f"search.sampler.seed={seed}",
        f"search.n_trials={trials}",
        "search.max_failed_trials=0",  # random's lr up to 0.3 diverges often; keep counting
        *extra,
    )
    run_worker(sweep)
    return [
        t.value if t.state == TrialState.COMPLETE else None
        for t in sweep.study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ]


def first_below(values: Sequence[float | None], goal: float) -> int | None:
    """The 1-based trial at which a study first reaches a value below goal, or None."""
    return next((i + 1 for i, v in enumerate(values) if v is not None and v < goal), None)


def bench_search(
    store: Path, seeds: int, trials: int, extra: Sequence[str]
) -> dict[str, list[list] | str]:
    """Per sampler, each seed's values in trial order; a sampler that cannot run says why."""
    import importlib.util

    out: dict[str, list[list] | str] = {}
    for sampler in SEARCH_SAMPLERS:
        if sampler == "gp" and importlib.util.find_spec("torch") is None:
            out[sampler] = "not run: GPSampler needs torch (pip install 'sweep[gp]')"
            continue
        out[sampler] = []
        for seed in range(seeds):
            say(f"  {sampler} seed {seed}")
            out[sampler].append(search_values(store, sampler, seed, trials, extra))
    return out


def search_section(r: dict[str, list[list] | str], trials: int, seeds: int) -> Section:
    """Median best-after-N and median first trial below the goal, one row per sampler."""
    sec = Section(f"Search quality: best validation MSE after {trials} trials")
    for sampler, runs in r.items():
        if isinstance(runs, str):
            sec.rows.append(Row(sampler, runs))
            continue
        bests = [min((v for v in vals if v is not None), default=math.inf) for vals in runs]
        firsts = [first_below(vals, SEARCH_GOAL) for vals in runs]
        reached = [f for f in firsts if f is not None]
        value = (
            f"{statistics.median(bests):.2e} (seeds: {', '.join(f'{b:.1e}' for b in bests)}); "
            f"first < {SEARCH_GOAL:.0e} at trial "
            + ", ".join(str(f) if f else "never" for f in firsts)
            + (f" (median {statistics.median(reached):g})" if len(reached) == len(firsts) else "")
        )
        sec.rows.append(Row(sampler, value))
    sec.notes.append(
        f"median over {seeds} sampler seeds; the default space (depth, width, activation, "
        "learning rate), 50 epochs, median pruner; trial 1 is the tutorial's configuration; "
        "diverged trials fail and do not count towards the trials"
    )
    return sec


# --------------------------------------------------------------------------- 5. digits


def time_digits(
    seed: int, data: Any, epochs: int, batch_size: int, loop: bool
) -> tuple[float, float]:
    """Seconds and validation accuracy of the tutorial's MLP (64 -> 10 logits) on digits."""
    from sweep.backend import keras
    from sweep.model import build_mlp
    from sweep.training import reset_state, train

    reset_state(seed)
    model = build_mlp(4, 20, "tanh", data.input_dim, data.output_dim)
    opt = keras.optimizers.SGD(learning_rate=0.01)
    start = time.perf_counter()
    if loop:
        accuracy = train(model, opt, data, epochs, batch_size, seed, loss="crossentropy").metrics[
            "val_accuracy"
        ]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
        model.fit(data.train.x, data.train.y, batch_size=batch_size, epochs=epochs, verbose=0)
        accuracy = model.evaluate(data.val.x, data.val.y, verbose=0)[1]
    return time.perf_counter() - start, float(accuracy)


def bench_digits(
    seeds: int, epochs: int, store: Path, overrides: Sequence[str] = ()
) -> dict[str, list[float]]:
    """Per seed, model.fit and our loop back to back on digits, order alternating."""
    from sweep.data import dataset_for
    from sweep.training import configure_tensorflow

    cfg = compose_cfg(store, *overrides, "data=digits")
    configure_tensorflow(cfg.trainer.threads, cfg.trainer.deterministic)
    data, bs = dataset_for(cfg), cfg.trainer.batch_size
    runs = {
        "fit": lambda seed: time_digits(seed, data, epochs, bs, False),
        "loop": lambda seed: time_digits(seed, data, epochs, bs, True),
    }
    return rotated(runs, seeds, "digits", "acc")


def digits_section(r: dict[str, list[float]], epochs: int) -> Section:
    """Medians over seeds, as in part 1; no target: the row shows the loop is general."""
    med = {k: statistics.median(v) for k, v in r.items()}
    n = len(r["fit_s"])
    sec = Section(f"5. `model.fit` vs our loop on digits ({epochs} epochs, median of {n} seeds)")
    sec.rows += [
        Row("`model.fit` (softmax cross-entropy, SGD 0.01, batch 100)", f"{med['fit_s']:.2f} s"),
        Row("our loop (`loss=crossentropy`, tracing included)", f"{med['loop_s']:.2f} s"),
        Row("speed-up", f"{med['fit_s'] / med['loop_s']:.1f}x"),
        Row("validation accuracy: `model.fit` / our loop",
            f"{med['fit_acc']:.4f} / {med['loop_acc']:.4f}"),
    ]  # fmt: skip
    return sec


# --------------------------------------------------------------------------- 6. soak

SOAK_SKIP = 10  # each worker's first trials: tracing, imports and caches made once
SOAK_WINDOW = 30  # trials per worker compared at the start (after SOAK_SKIP) and at the end
SOAK_DRIFT = 0.10  # the end's per-trial time within 10% of the start's
SOAK_JOBS = 2


def soak_overrides(trials: int, epochs: int, space: str) -> list[str]:
    """The soak's study: `trials` of `epochs` each, two workers; the tutorial's configuration in
    every trial (the same work each time, so a change of pace is the study's growth) unless
    `space` is `default` (the default search space: TPE, architectures that differ)."""
    # The default space's learning rates up to 0.3 diverge often: keep counting, as `search` does.
    fixed = list(FIXED_SPACE) if space == "fixed" else ["search.max_failed_trials=0"]
    return [
        *fixed,
        f"search.n_trials={trials}",
        f"trainer.epochs={epochs}",
        f"search.jobs={SOAK_JOBS}",
        "search.study_name=soak",
    ]


def count_reads(study: Any) -> dict[str, float]:
    """Count and time every read of the study's trials from here on (the pruner's every epoch,
    the sampler's, the worker's own counts): what a trial's cost may grow with."""
    storage = study._storage
    inner = storage.get_all_trials
    tally = {"reads": 0, "read_s": 0.0}

    def get_all_trials(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            tally["reads"] += 1
            tally["read_s"] += time.perf_counter() - start

    storage.get_all_trials = get_all_trials
    return tally


def soak_trial(sweep: Any, tally: dict[str, float]) -> dict[str, float] | None:
    """One trial as a worker runs it, measured: seconds to get it and to run it (artifacts
    written), the worker's CPU seconds, its reads of the study, memory; None once it is done."""
    from sweep import worker
    from sweep.progress import Silent
    from sweep.tracking import drain

    start, cpu, before = time.perf_counter(), time.process_time(), dict(tally)
    if (trial := worker.next_trial(sweep)) is None:
        return None
    asked = time.perf_counter()
    worker.run_trial(sweep, trial, Silent())
    drain()
    return {
        "number": trial.number,
        "ask_s": asked - start,
        "trial_s": time.perf_counter() - asked,
        "cpu_s": time.process_time() - cpu,
        "reads": tally["reads"] - before["reads"],
        "read_s": tally["read_s"] - before["read_s"],
        **memory_mb(),
    }


def soak_worker(
    store: str, index: int, trials: int, epochs: int, space: str, overrides: Sequence[str] = ()
) -> list[dict[str, float]]:
    """One soak worker in its own process, pinned and threaded as `search.jobs` runs it: its
    trials one after another, each measured (`soak_trial`)."""
    from sweep.worker import pin_worker

    threads = pin_worker(index, SOAK_JOBS)
    extra = [f"trainer.threads={threads}"] if threads else []
    sweep = open_bench_sweep(
        Path(store), *soak_overrides(trials, epochs, space), *overrides, *extra
    )
    tally, samples = count_reads(sweep.study), []
    with background_writes():
        while (sample := soak_trial(sweep, tally)) is not None:
            samples.append({"trial": len(samples) + 1, **sample})
            if len(samples) % 25 == 0:
                say(f"  soak part: worker {index}, {len(samples)} trials, study trial "
                    f"{sample['number']}, RSS {sample['VmRSS']:.0f} MB")  # fmt: skip
    return samples


def store_sizes(store: Path) -> dict[str, float]:
    """MB on disk of the embedded stores (each SQLite file with its WAL), and the artifacts'."""
    files = [p for p in (store / "artifacts").rglob("*") if p.is_file()]
    return {
        "optuna.db": sum(p.stat().st_size for p in store.glob("optuna.db*")) / 1e6,
        "mlflow.db": sum(p.stat().st_size for p in store.glob("mlflow.db*")) / 1e6,
        "artifacts": sum(p.stat().st_size for p in files) / 1e6,
        "artifact_files": len(files),
    }


def bench_soak(
    store: Path, trials: int, epochs: int, space: str = "fixed", overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The study made here as `python -m sweep sweep` makes it, then two spawned workers on it
    (SQLite study, SQLite MLflow store, artifacts on disk) until it has `trials` trials."""
    from collections import Counter

    where = store / "soak"
    sweep = open_bench_sweep(where, *soak_overrides(trials, epochs, space), *overrides)
    start = time.perf_counter()
    with ProcessPoolExecutor(SOAK_JOBS, mp_context=get_context("spawn")) as pool:
        jobs = [
            pool.submit(soak_worker, str(where), i, trials, epochs, space, list(overrides))
            for i in range(SOAK_JOBS)
        ]
        workers = [job.result() for job in jobs]
    wall = time.perf_counter() - start
    states = Counter(t.state.name for t in sweep.study.get_trials(deepcopy=False))
    return {"workers": workers, "wall": wall, "states": dict(states), "sizes": store_sizes(where)}


def soak_windows(samples: list[dict[str, float]]) -> tuple[list[dict], list[dict], int]:
    """A worker's trials at the start (past its one-off first ones) and at the end, and how many
    first ones were skipped; clamped for a short soak."""
    skip = min(SOAK_SKIP, len(samples) // 3)
    width = max(1, min(SOAK_WINDOW, (len(samples) - skip) // 2))
    return samples[skip : skip + width], samples[-width:], skip


def _median(samples: Sequence[dict[str, float]], *keys: str) -> float:
    """The median over trials of the sum of `keys` (e.g. ask_s + trial_s)."""
    return statistics.median(sum(s[k] for k in keys) for s in samples)


def soak_section(r: dict[str, Any], trials: int, epochs: int, space: str = "fixed") -> Section:
    """Pace and memory at the end against the start, per worker and pooled; the stores' sizes."""
    windows = [soak_windows(w) for w in r["workers"] if w]
    start = [s for first, _, _ in windows for s in first]
    end = [s for _, last, _ in windows for s in last]
    pace = {k: (_median(start, *keys), _median(end, *keys)) for k, keys in
            {"cpu": ("cpu_s",), "wall": ("ask_s", "trial_s"), "ask": ("ask_s",),
             "read": ("read_s",), "reads": ("reads",)}.items()}  # fmt: skip
    drift = {k: pace[k][1] / pace[k][0] - 1 for k in ("cpu", "wall")}
    skip, width = windows[0][2], len(windows[0][1])
    what = "the tutorial's configuration" if space == "fixed" else "the default search space"
    sec = Section(f"6. Long soak: a {trials}-trial study, {SOAK_JOBS} workers, embedded stores "
                  f"({what}, {epochs} epochs a trial)")  # fmt: skip
    sec.rows += [
        Row("trials in the study / run by each worker / wall",
            f"{', '.join(f'{n} {k.lower()}' for k, n in sorted(r['states'].items()))} / "
            f"{' + '.join(str(len(w)) for w in r['workers'])} / {r['wall']:.0f} s"),
        Row(f"per-trial CPU time of a worker (ask, train, log, artifacts), median of trials "
            f"{skip + 1}-{skip + width} / of the last {width}, every worker",
            f"{pace['cpu'][0]:.2f} s / {pace['cpu'][1]:.2f} s ({drift['cpu']:+.1%})",
            f"within {SOAK_DRIFT:.0%}", verdict(abs(drift["cpu"]) <= SOAK_DRIFT)),
        Row("per-trial wall time, the same trials (other processes' load moves it)",
            f"{pace['wall'][0]:.2f} s / {pace['wall'][1]:.2f} s ({drift['wall']:+.1%})"),
        Row("of which asking for a trial (`next_trial`): start / end",
            f"{1000 * pace['ask'][0]:.0f} ms / {1000 * pace['ask'][1]:.0f} ms"),
        Row("of which reading the study's trials (Optuna `get_all_trials`): start / end",
            f"{1000 * pace['read'][0]:.1f} ms / {1000 * pace['read'][1]:.1f} ms in "
            f"{pace['reads'][0]:.0f} / {pace['reads'][1]:.0f} reads a trial"),
    ]  # fmt: skip
    sec.rows += [_soak_memory_row(i, w, skip) for i, w in enumerate(r["workers"]) if w]
    sizes = r["sizes"]
    sec.rows.append(
        Row("stores after the soak",
            f"optuna.db {sizes['optuna.db']:.1f} MB, mlflow.db {sizes['mlflow.db']:.1f} MB, "
            f"artifacts {sizes['artifacts']:.0f} MB in {sizes['artifact_files']} files")
    )  # fmt: skip
    sec.notes += [_soak_trend(i, w) for i, w in enumerate(r["workers"]) if w]
    sec.notes.append(
        "per-trial time = from asking for a trial to its last artifact on disk: the worker "
        "process's CPU seconds (all its threads), which the target is about, and wall seconds, "
        "which a shared machine's other processes stretch; memory = VmRSS after each trial. "
        "Diverged trials fail and do not count towards search.n_trials; a worker's surplus "
        "give-back (both asked for the last slot) is a FAIL."
    )
    return sec


def _soak_memory_row(index: int, samples: list[dict[str, float]], skip: int) -> Row:
    """One worker's RSS after its one-off first trials against its last, with the 50 MB target."""
    base, last = samples[max(skip - 1, 0)], samples[-1]
    growth = last["VmRSS"] - base["VmRSS"]
    return Row(
        f"worker {index}: RSS after trial {int(base['trial'])} / after trial {int(last['trial'])}"
        f" (peak {last['VmHWM']:.0f} MB)",
        f"{base['VmRSS']:.0f} MB / {last['VmRSS']:.0f} MB ({growth:+.1f} MB)",
        f"< {TARGETS['growth_mb']:g} MB",
        verdict(growth < TARGETS["growth_mb"]),
    )


def _soak_trend(index: int, samples: list[dict[str, float]], block: int = 25) -> str:
    """A worker's pace and memory by blocks of trials, to show a trend (or its absence)."""
    blocks = [samples[i : i + block] for i in range(0, len(samples), block)]
    cpu = ", ".join(f"{_median(b, 'cpu_s'):.2f}" for b in blocks)
    wall = ", ".join(f"{_median(b, 'ask_s', 'trial_s'):.2f}" for b in blocks)
    rss = ", ".join(f"{b[-1]['VmRSS']:.0f}" for b in blocks)
    return (
        f"worker {index}, by blocks of {block} trials: median CPU seconds a trial {cpu}; "
        f"median wall seconds {wall}; RSS at each block's end (MB) {rss}"
    )


# --------------------------------------------------------------------------- the parts


def fit_part(args: argparse.Namespace, store: Path) -> Section:
    """Part 1 at the command line's sizes."""
    fit = bench_fit(args.seeds, args.epochs, not args.no_xla, store / "fit", args.set)
    return fit_section(fit, args.epochs)


def trial_part(args: argparse.Namespace, store: Path) -> Section:
    """Part 2 at the command line's sizes."""
    return trial_section(bench_trial(store / "trial", args.trial_trials, args.set))


def workers_part(args: argparse.Namespace, store: Path) -> Section:
    """Part 3 at the command line's sizes."""
    sizes = [int(n) for n in str(args.worker_trials).split(",")]
    reps, epochs = args.worker_repeats, args.worker_epochs
    runs = {n: best_workers(store, reps, n, epochs, args.set) for n in sizes}
    first = sorted(sizes)[len(sizes) // 2]  # the middle size again, as a project's first sweep
    fresh = best_workers(store, 1, first, epochs, args.set, fresh=True)
    return workers_section(runs, epochs, {first: fresh})


def memory_part(args: argparse.Namespace, store: Path) -> Section:
    """Part 4 at the command line's sizes."""
    samples = bench_memory(store, args.memory_trials, args.memory_epochs, args.set)
    return memory_section(samples, args.memory_epochs)


def digits_part(args: argparse.Namespace, store: Path) -> Section:
    """Part 5 at the command line's sizes (the fit part's seeds and epochs)."""
    return digits_section(
        bench_digits(args.seeds, args.epochs, store / "digits", args.set), args.epochs
    )


def search_part(args: argparse.Namespace, store: Path) -> Section:
    """Part 5 at the command line's sizes."""
    runs = bench_search(store / "search", args.search_seeds, args.search_trials, args.set)
    return search_section(runs, args.search_trials, args.search_seeds)


def soak_part(args: argparse.Namespace, store: Path) -> Section:
    """Part 6 at the command line's sizes."""
    r = bench_soak(store, args.soak_trials, args.soak_epochs, args.soak_space, args.set)
    return soak_section(r, args.soak_trials, args.soak_epochs, args.soak_space)


PartRunner = Callable[[argparse.Namespace, Path], Section]
# name for --only -> (what the progress line says, the part), in the table's order
PART_RUNNERS: dict[str, tuple[str, PartRunner]] = {
    "fit": ("model.fit vs our loop", fit_part),
    "trial": ("trials with all tracking", trial_part),
    "workers": ("1 worker, then 2 workers", workers_part),
    "memory": ("a worker's RSS over a study", memory_part),
    "digits": ("model.fit vs our loop on digits", digits_part),
    "search": ("TPE, random, GP and CMA-ES side by side", search_part),
    "soak": ("a long study on two workers: pace and memory", soak_part),
}
PARTS = tuple(PART_RUNNERS)


# --------------------------------------------------------------------------- the table


def render(sections: Sequence[Section], header: Sequence[str]) -> str:
    """Markdown: a header paragraph, then one table per part with its notes under it."""
    lines = [*header, ""]
    for sec in sections:
        lines += [f"**{sec.title}**", "", "| measurement | value | target | result |"]
        lines.append("| --- | --- | --- | --- |")
        lines += [f"| {r.what} | {r.value} | {r.target} | {r.verdict} |" for r in sec.rows]
        lines += [""] + [f"_{n}_" for n in sec.notes] + [""]
    return "\n".join(lines).rstrip() + "\n"


def say(text: str) -> None:
    """Progress on the terminal as it happens, even when piped."""
    print(text, flush=True)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The sizes of every part; an unknown part is refused before anything loads."""
    p = argparse.ArgumentParser(
        prog="python benchmarks/bench.py", description=__doc__.split("\n")[0]
    )
    p.add_argument("--only", default=",".join(PARTS), help=f"comma list of: {','.join(PARTS)}")
    p.add_argument("--seeds", type=int, default=5, help="seeds for the fit part (default 5)")
    p.add_argument("--epochs", type=int, default=50, help="epochs in the fit part (default 50)")
    p.add_argument("--no-xla", action="store_true", help="skip the XLA row of the fit part")
    p.add_argument("--trial-trials", type=int, default=8, help="trials per mode in part 2")
    p.add_argument("--worker-trials", default="4,12,30", help="study sizes in part 3 (comma list)")
    p.add_argument("--worker-epochs", type=int, default=50, help="epochs per trial in part 3")
    p.add_argument(
        "--worker-repeats", type=int, default=2, help="1-then-2-worker rounds, best kept"
    )
    p.add_argument("--memory-trials", type=int, default=30, help="trials in part 4")
    p.add_argument("--memory-epochs", type=int, default=10, help="epochs per trial in part 4")
    p.add_argument("--search-trials", type=int, default=30, help="trials per study in part 5")
    p.add_argument("--search-seeds", type=int, default=3, help="sampler seeds in part 5")
    p.add_argument("--soak-trials", type=int, default=300, help="study size in part 6")
    p.add_argument("--soak-epochs", type=int, default=10, help="epochs per trial in part 6")
    p.add_argument(
        "--soak-space", choices=("fixed", "default"), default="fixed",
        help="part 6's trials: the tutorial's configuration, or the default search space",
    )  # fmt: skip
    p.add_argument("--out", default=str(ROOT / "bench-output" / "bench.md"), help="table file")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a Hydra override for every part, e.g. --set experiment=tiny (quick checks)",
    )  # fmt: skip
    args = p.parse_args(list(argv))
    args.parts = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"--only: unknown part(s) {sorted(unknown)}; choose from {','.join(PARTS)}")
    return args


def run_parts(args: argparse.Namespace, store: Path) -> list[Section]:
    """The chosen parts, always in table order, each on its own temporary stores."""
    sections = []
    for name, (what, run) in PART_RUNNERS.items():
        if name in args.parts:
            say(f"{name} part: {what} ...")
            sections.append(run(args, store))
    return sections


def main(argv: Sequence[str]) -> int:
    """Measure, print the table, write it to --out; exit 1 if any target failed."""
    args = parse_args(argv)
    started, load_before = dt.datetime.now(dt.UTC), load()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        sections = run_parts(args, Path(tmp))
    header = [
        f"`python benchmarks/bench.py {' '.join(argv)}`".replace(" `", "`"),
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average before "
        f"{load_before}, after {load()}, {time.perf_counter() - t0:.0f} s in all.",
    ]
    table = render(sections, header)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    say("\n" + table + f"\n(written to {out})")
    failed = any(r.verdict == "FAIL" for s in sections for r in s.rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
