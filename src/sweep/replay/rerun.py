"""`python -m sweep rerun`: train a past run again from its record alone and compare every metric.

Exit codes (sweep.core.errors): 0 reproduced, 1 differs beyond the tolerance, 2 a user error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sweep.config.stores import Store
from sweep.core.errors import EXIT_FAILED, EXIT_OK, ConfigError
from sweep.core.secrets import mask_url, printable
from sweep.replay.record import (
    RUN_ID,
    Record,
    check_bounds,
    check_data_file,
    load_record,
    rerun_config,
    train_again,
)

# Relative tolerance used by default when the rerun's environment differs from the original's.
LOOSE_TOLERANCE = 1e-3
Series = dict[int, float]


# --------------------------------------------------------------------------- what may differ


def environment_differences(original: dict[str, Any], rerun: dict[str, Any]) -> list[str]:
    """Each way the rerun's code, libraries, machine or data differ from the original's."""
    out: list[str] = []
    before, after = original.get("versions", {}), rerun.get("versions", {})
    for name in sorted(before.keys() | after.keys()):
        if before.get(name) != after.get(name):
            out.append(f"{name} {before.get(name, 'absent')} -> {after.get(name, 'absent')}")
    for section, keys in (
        ("platform", ("system", "machine")),
        ("runtime", ("cpu", "cpus", "onednn_opts", "op_determinism")),
    ):
        a, b = original.get(section), rerun.get(section)
        if a is None or b is None:  # an older record without this section
            continue
        out += [f"{k} {a.get(k)} -> {b.get(k)}" for k in keys if a.get(k) != b.get(k)]
    out += _git_differences(original.get("git", {}), rerun.get("git", {}))
    a, b = original.get("data_digest", {}), rerun.get("data_digest", {})
    changed = [k for k in ("train", "val", "test") if a.get(k) != b.get(k)]
    if changed:
        out.append(f"data digest of {', '.join(changed)} differs")
    if original.get("deterministic") is False:
        out.append("the original ran without op determinism (trainer.deterministic=false)")
    return out


def _git_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    if a.get("commit") != b.get("commit"):
        out.append(f"git commit {str(a.get('commit'))[:12]} -> {str(b.get('commit'))[:12]}")
    for who, state in (("original", a), ("rerun", b)):
        if str(state.get("dirty")).lower() != "false":
            out.append(f"the {who}'s checkout had uncommitted changes (git dirty)")
    return out


def choose_tolerance(given: float | None, differences: Sequence[str]) -> tuple[float, str]:
    """Exact when nothing differs; LOOSE_TOLERANCE when something does; the user's when given."""
    if given is not None:
        return given, "set with --tolerance"
    if differences:
        return LOOSE_TOLERANCE, "default when the environment differs"
    return 0.0, "the default: same platform, versions and commit"


# --------------------------------------------------------------------------- metric comparison

Series = dict[int, float]


@dataclass
class Row:
    """One metric compared: values at the step where they differ most, and the verdict."""

    name: str
    steps: str
    original: float | None
    rerun: float | None
    diff: float | None
    verdict: str
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.verdict in ("DIFFERS", "MISSING")


def is_timing(name: str) -> bool:
    """Wall-clock metrics are never equal twice; shown, not judged."""
    return name.endswith(("_seconds", "_time", "_secs", "_ms"))  # predict_ms too


def close_enough(a: float, b: float, tolerance: float) -> bool:
    """Relative tolerance; 0 means bit-identical; NaN matches NaN (a reproduced divergence)."""
    if a == b or (math.isnan(a) and math.isnan(b)):
        return True
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return False
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def compare_metric(name: str, original: Series, rerun: Series, tolerance: float) -> Row:
    """Compare two step -> value series over the original's steps."""
    if not rerun:
        verdict = "timing, not compared" if is_timing(name) else "MISSING"
        return Row(name, _span(original), original[max(original)], None, None, verdict)
    if not original:
        last = max(rerun)
        return Row(name, _span(rerun), None, rerun[last], None, "only in rerun")
    common = sorted(original.keys() & rerun.keys())
    if not common:
        return Row(name, _span(original), original[max(original)], None, None, "MISSING")
    diffs = {s: _abs_diff(original[s], rerun[s]) for s in common}
    worst = max(common, key=lambda s: (diffs[s], s))
    ok = all(close_enough(original[s], rerun[s], tolerance) for s in common)
    identical = all(original[s] == rerun[s] or _both_nan(original[s], rerun[s]) for s in common)
    verdict = "identical" if identical else ("within tol" if ok else "DIFFERS")
    if is_timing(name):
        verdict = "timing, not compared"
    row = Row(
        name, _span(dict.fromkeys(common)), original[worst], rerun[worst], diffs[worst], verdict
    )
    lost = sorted(original.keys() - rerun.keys())
    if lost and not is_timing(name):
        row.verdict = "MISSING"
        row.notes.append(f"rerun lacks steps {lost[0]}..{lost[-1]}")
    return row


def compare_runs(
    original: dict[str, Series], rerun: dict[str, Series], tolerance: float
) -> list[Row]:
    """Every metric of either run, per-epoch ones first."""
    names = sorted(
        original.keys() | rerun.keys(),
        key=lambda n: (max(len(original.get(n, {})), len(rerun.get(n, {}))) <= 1, n),
    )
    return [compare_metric(n, original.get(n, {}), rerun.get(n, {}), tolerance) for n in names]


def _abs_diff(a: float, b: float) -> float:
    if _both_nan(a, b) or a == b:
        return 0.0
    d = abs(a - b)
    return math.inf if math.isnan(d) else d


def _both_nan(a: float, b: float) -> bool:
    return math.isnan(a) and math.isnan(b)


def _span(series: dict[int, Any]) -> str:
    steps = sorted(series)
    if not steps:
        return "-"
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"


def table_text(rows: Sequence[Row]) -> str:
    """The comparison as aligned columns; per-epoch metrics show the epoch that differs most."""
    head = ("metric", "steps", "original", "rerun", "abs diff", "verdict")
    body = [
        (
            r.name,
            r.steps,
            _num(r.original),
            _num(r.rerun),
            "-" if r.diff is None else ("0" if r.diff == 0 else f"{r.diff:.3g}"),
            r.verdict + (f" ({'; '.join(r.notes)})" if r.notes else ""),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in (head, *body)
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.9g}"


# --------------------------------------------------------------------------- rerun


def rerun_command(run_id: str, store: Store, tolerance: float | None = None) -> int:
    """Replay one run from its record, log it as a new run, print and judge the comparison."""
    from sweep.core import console
    from sweep.tracking import Reader, check_reachable

    if tolerance is not None and not tolerance >= 0:
        raise ConfigError(f"--tolerance must be >= 0, got {tolerance}")
    check_reachable(store.uri)
    reader = Reader(store.uri)
    record = load_record(reader, full_run_id(reader, run_id.strip()))
    check_data_file(record)
    name = printable(record.run.info.run_name or run_id[:8])  # also the new run's name
    console.say(
        f"rerunning run {record.run_id} ({name}) from its logged config; "
        f"new run in {mask_url(store.uri)}"
    )
    cfg = rerun_config(record.cfg, store)
    if record.run.data.tags.get("sweep.state") == "PRUNED":
        # Replayed up to the epoch it was pruned at, so its final MSEs compare too.
        logged = reader.metric_history(record.run_id, "val_loss")
        cfg.trainer.epochs = len(logged) or cfg.trainer.epochs
        check_bounds(cfg)  # a forged history of a million steps asks for a million epochs
    tags = {"sweep.kind": "rerun", "sweep.rerun_of": record.run_id}
    new_id, _ = train_again(cfg, f"rerun-{name}", record.overrides, tags)
    new = load_record(reader, new_id)
    differences = environment_differences(record.replay, new.replay)
    tol, why = choose_tolerance(tolerance, differences)
    rows = compare_runs(reader.metric_series(record.run), reader.metric_series(new.run), tol)
    failed = [r.name for r in rows if r.failed]
    verdict = "differs" if failed else ("identical" if _all_identical(rows) else "within tolerance")
    console.say(_rerun_report(record, new_id, differences, tol, why, rows, verdict))
    _log_outcome(reader, new_id, rows, differences, tol, verdict)
    return EXIT_FAILED if failed else EXIT_OK


SHORT_ID = re.compile(r"^[0-9a-f]{4,31}$")
CANDIDATES = 5  # an ambiguous prefix lists this many of the runs it names


def full_run_id(reader: Any, given: str) -> str:
    """A run id, or a unique prefix of one as git takes a short commit (the 8 digits each trial
    line prints); an ambiguous prefix lists the runs it could mean."""
    if RUN_ID.match(given):
        return given
    if not SHORT_ID.match(given):
        raise ConfigError(
            f"{given!r} is not an MLflow run id (32 hex digits) or the start of one (4 or more)"
        )
    runs = reader.runs_starting(given, CANDIDATES + 1)
    if not runs:
        raise ConfigError(
            f"no run id in {mask_url(reader.uri)} starts with {given}; "
            "if it was logged to another store, pass --store DIR or --tracking-uri URI"
        )
    if len(runs) > 1:
        named = sorted((r.info.run_id, r.info.run_name) for r in runs)[:CANDIDATES]
        shown = ", ".join(f"{run_id} ({name})" for run_id, name in named)
        more = " and more" if len(runs) > CANDIDATES else ""
        raise ConfigError(f"run id {given} is ambiguous: {shown}{more}; give more digits")
    return runs[0].info.run_id


def _all_identical(rows: Sequence[Row]) -> bool:
    return all(r.verdict in ("identical", "timing, not compared", "only in rerun") for r in rows)


def _rerun_report(
    record: Record,
    new_id: str,
    differences: Sequence[str],
    tol: float,
    why: str,
    rows: Sequence[Row],
    verdict: str,
) -> str:
    lines = [table_text(rows)]
    status = record.run.info.status
    if status != "FINISHED":
        tags = record.run.data.tags
        how = "; ".join(t for t in (tags.get("sweep.state"), tags.get("fail_reason")) if t)
        lines.append(
            f"note: the original ended {status}"
            + (f" ({how})" if how else "")
            + "; compared over the epochs it logged"
        )
    if differences:
        lines.append("the environment differs from the original's:")
        lines += [f"  - {d}" for d in differences]
    lines.append(f"tolerance: {'exact' if tol == 0 else f'relative {tol:g}'} ({why})")
    failed = [r.name for r in rows if r.failed]
    lines.append(
        f"rerun {new_id}: {verdict.upper()}"
        + (f" beyond the tolerance in {', '.join(failed)}" if failed else "")
    )
    return "\n".join(lines)


def _log_outcome(
    reader: Any,
    run_id: str,
    rows: Sequence[Row],
    differences: Sequence[str],
    tol: float,
    verdict: str,
) -> None:
    """The comparison on the rerun's own run: a JSON artifact and a verdict tag."""
    data = {
        "verdict": verdict,
        "tolerance": tol,
        "differences": list(differences),
        "metrics": [r.__dict__ for r in rows],
    }
    run = reader.open_run(run_id)
    run.log_json(data, "rerun_comparison.json")
    run.set_tags({"sweep.rerun_verdict": verdict, "sweep.rerun_tolerance": str(tol)})
