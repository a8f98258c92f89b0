"""The startup part: each command's time from the shell to its first useful output, beside the
import of TensorFlow alone.

Why: every command pays its start-up, and a baseline that trains for 1.4 s took about 10 s
(issue 26). Targets: the first trial of a sweep starts within 0.5 s of what `import tensorflow`
alone takes here; `ui`, `dashboard` and `server` are ready within 5 s and never import
TensorFlow (read from `python -X importtime`). Medians over --startup-repeats fresh processes.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.common import ROOT, Row, Section, clean_env, say, store_overrides, verdict

WHAT = "each command's time to its first useful output"
FIRST_TRIAL_MARGIN = 0.5  # seconds over `import tensorflow` alone
READY_WITHIN = 5.0  # seconds for ui, dashboard and server
TIMEOUT = 300.0
FIRST_START = "server (first start: makes the store's schema)"
# What each server prints once it answers (the line a user waits for), and its arguments.
SERVERS: dict[str, tuple[str, Callable[[Path, int], list[str]]]] = {
    "ui": ("(Ctrl-C to stop)", lambda s, p: ["ui", "--port", str(p), "--store", str(s)]),
    "dashboard": (
        "(Ctrl-C to stop)",
        lambda s, p: ["dashboard", "--port", str(p), "--store", str(s)],
    ),
    # A server's first start makes its store's schema (MLflow's migrations, seconds of its own);
    # every later start, the daily case and the one with a target, finds the schema there.
    FIRST_START: (
        "Ctrl-C stops the server",
        lambda s, p: (
            ["server", "--port", str(p), "--backend-store-uri", f"sqlite:///{s}/srv.db"]
            + ["--artifacts-destination", str(s / "srv-artifacts")]
        ),
    ),
}
SERVERS["server"] = SERVERS[FIRST_START]  # the same command again, on the store just made


def add_arguments(p: argparse.ArgumentParser) -> None:
    """How many fresh processes each measurement takes the median of."""
    p.add_argument(
        "--startup-repeats", type=int, default=3, help="processes per command (startup part)"
    )


def run(args: argparse.Namespace, store: Path) -> Section:
    """Each measurement `repeats` times, in turn, so a machine's drift favours none."""
    r: dict[str, list[float]] = {}
    imported: dict[str, bool] = {}
    for i in range(args.startup_repeats):
        say(f"  startup part: round {i + 1} of {args.startup_repeats}")
        r.setdefault("tensorflow", []).append(import_tensorflow())
        run_store = store / f"startup-{i}"
        r.setdefault("first_trial", []).append(first_trial(run_store, args.set))
        for name in SERVERS:
            seconds, tf = ready(name, run_store)
            r.setdefault(name, []).append(seconds)
            imported[name] = imported.get(name, False) or tf
    return startup_section({k: statistics.median(v) for k, v in r.items()}, imported)


def import_tensorflow() -> float:
    """Wall seconds of `python -c "import tensorflow"`: the floor every training command pays."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True)
    return time.perf_counter() - t0


def first_trial(store: Path, extra: Sequence[str]) -> float:
    """Seconds from `python -m sweep sweep` to its first trial in the study (asked, training)."""
    cmd = [sys.executable, "-m", "sweep", "sweep", "experiment=tiny", "search.n_trials=1"]
    cmd += [*store_overrides(store), *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    db = store / "optuna.db"
    seconds = None
    while proc.poll() is None and time.perf_counter() - t0 < TIMEOUT:
        if _has_trial(db):
            seconds = time.perf_counter() - t0
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=TIMEOUT)
    if proc.returncode != 0 or seconds is None:
        raise RuntimeError(f"sweep failed (exit {proc.returncode}): {err.decode()[-500:]}")
    return seconds


def _has_trial(db: Path) -> bool:
    """Whether the study's SQLite file holds a trial yet (its tables may not exist yet)."""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as con:
            return con.execute("select count(*) from trials").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def ready(name: str, store: Path) -> tuple[float, bool]:
    """Seconds from `python -m sweep <name>` to the line saying it serves, and whether the
    process imported TensorFlow on the way (`-X importtime` names every module imported)."""
    from sweep.core.processes import stop

    marker, arguments = SERVERS[name]
    port = _free_port()
    with tempfile.TemporaryFile() as err:
        cmd = [sys.executable, "-X", "importtime", "-m", "sweep", *arguments(store, port)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=err,
            text=True, start_new_session=True,
        )  # fmt: skip
        seen = threading.Event()
        threading.Thread(target=_watch, args=(proc, marker, seen), daemon=True).start()
        found = seen.wait(TIMEOUT)
        seconds = time.perf_counter() - t0
        stop(proc)
        err.seek(0)
        text = err.read().decode(errors="replace")
    if not found:
        raise RuntimeError(f"{name} never said it was ready: {text[-500:]}")
    return seconds, any(ln.rstrip().endswith("| tensorflow") for ln in text.splitlines())


def _watch(proc: subprocess.Popen, marker: str, seen: threading.Event) -> None:
    """Set `seen` at the first stdout line holding `marker`; keep draining after it."""
    for line in proc.stdout:
        if marker in line:
            seen.set()


def _free_port() -> int:
    """A port nobody listens on right now, on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def startup_section(seconds: dict[str, float], imported: dict[str, bool]) -> Section:
    """`import tensorflow`, the first trial against it, and each server's readiness."""
    sec = Section("Startup: from the shell to each command's first useful output")
    tf, first = seconds["tensorflow"], seconds["first_trial"]
    sec.rows.append(Row('`python -c "import tensorflow"`', f"{tf:.1f} s"))
    sec.rows.append(
        Row(
            "`sweep` to its first trial (experiment=tiny)",
            f"{first:.1f} s ({first - tf:+.1f} s)",
            f"<= import + {FIRST_TRIAL_MARGIN:g} s",
            verdict(first <= tf + FIRST_TRIAL_MARGIN),
        )
    )
    for name in SERVERS:
        s, tf_in = seconds[name], imported[name]
        value = f"{s:.1f} s" + (", imports TensorFlow" if tf_in else ", no TensorFlow")
        if name == FIRST_START:
            sec.rows.append(Row("first start of a server on a new store (its schema)", value))
            continue
        ok = s <= READY_WITHIN and not tf_in
        sec.rows.append(
            Row(
                f"`{name}` ready{' (again, on its store)' * (name == 'server')}",
                value,
                f"<= {READY_WITHIN:g} s, no TensorFlow",
                verdict(ok),
            )
        )
    sec.notes.append(
        "medians over fresh processes; the first trial is the study's first row in its SQLite "
        "file; a server is ready at the line that gives its address; TensorFlow read from "
        "`python -X importtime` (which slows imports a little)"
    )
    return sec
