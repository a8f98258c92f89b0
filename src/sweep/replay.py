"""Reruns of past runs from their MLflow record alone, and seed robustness of a study's best trials.

Neither command composes conf/: each configuration is the run's logged `config.yaml`, so editing
conf/ after a run cannot change its rerun. Only the tracking section is replaced, so new runs go
to today's store. Exit codes: 0 reproduced, 1 differs beyond the tolerance, 2 a user error.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from omegaconf import DictConfig, OmegaConf

from sweep.config import Store, existing_store, mask_url, sqlite_path, upgrade_record
from sweep.errors import ConfigError, first_line

EXIT_SAME, EXIT_DIFFERS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
# Relative tolerance used by default when the rerun's environment differs from the original's.
LOOSE_TOLERANCE = 1e-3
DEFAULT_STORE = "mlruns"
RECORD_FILES = ("config.yaml", "replay.json")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
REQUIRED_KEYS = (
    "seed",
    "data.x_min",
    "data.x_max",
    "data.step",
    "data.n_val",
    "data.n_test",
    "data.seed",
    "model.depth",
    "model.width",
    "model.activation",
    "optimizer",  # its keys differ before and after `_target_`; upgrade_record maps them
    "trainer.epochs",
    "trainer.batch_size",
    "trainer.deterministic",
)


# --------------------------------------------------------------------------- stores and records


@dataclass
class Record:
    """A past run and what it logged to be replayed."""

    run: Any  # mlflow.entities.Run
    cfg: DictConfig
    replay: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def overrides(self) -> list[str]:
        return list(self.replay.get("overrides", []))


def fetch_run(client: Any, run_id: str, store: Store) -> Any:
    """The run, or one line saying it is not a run of this store."""
    from sweep.tracking import MlflowException

    if not RUN_ID.match(run_id):
        raise ConfigError(f"{run_id!r} is not an MLflow run id (32 hex digits)")
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc):
            raise ConfigError(
                f"run {run_id} is not in the tracking store {mask_url(store.uri)}; "
                "if it was logged to another store, pass --store DIR or --tracking-uri URI"
            ) from None
        raise ConfigError(f"tracking store {mask_url(store.uri)}: {first_line(exc)}") from exc
    if run.info.lifecycle_stage == "deleted":
        raise ConfigError(f"run {run_id} was deleted from {mask_url(store.uri)}")
    return run


def load_record(client: Any, run_id: str, store: Store) -> Record:
    """Download a run's config.yaml and replay.json; one line when it cannot be replayed."""
    run = fetch_run(client, run_id, store)
    local = _local_artifact_dir(run.info.artifact_uri)
    if local is not None and not local.is_dir():
        raise ConfigError(
            f"run {run_id} has no replay record here: its artifact folder {local} does not exist "
            "(a run logged on another machine, or one without artifacts)"
        )
    files = {a.path for a in _list_artifacts(client, run)}
    missing = [name for name in RECORD_FILES if name not in files]
    if missing:
        hint = (
            "it is a sweep's parent run; rerun one of its trials"
            if run.data.tags.get("sweep.kind") == "sweep"
            else "only runs logged by `python -m sweep` carry one"
        )
        raise ConfigError(
            f"run {run_id} has no replay record (missing {', '.join(missing)}): {hint}"
        )
    texts = {name: _download_text(client, run, name) for name in RECORD_FILES}
    cfg = OmegaConf.create(yaml.safe_load(texts["config.yaml"]))
    missing_keys = [k for k in REQUIRED_KEYS if OmegaConf.select(cfg, k) is None]
    if missing_keys:
        raise ConfigError(f"run {run_id}'s config.yaml lacks {', '.join(missing_keys)}")
    return Record(run, cfg, json.loads(texts["replay.json"]))


def _local_artifact_dir(artifact_uri: str) -> Path | None:
    parts = urlsplit(artifact_uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(artifact_uri) if parts.scheme == "" else None


def _list_artifacts(client: Any, run: Any) -> list[Any]:
    try:
        return client.list_artifacts(run.info.run_id)
    except Exception as exc:  # any artifact repository's failure: unreachable, denied
        raise ConfigError(
            f"cannot read run {run.info.run_id}'s artifacts at {run.info.artifact_uri}: "
            f"{first_line(exc)}"
        ) from exc


def _download_text(client: Any, run: Any, name: str) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run.info.run_id, name, tmp)
        except Exception as exc:
            raise ConfigError(
                f"cannot download {name} of run {run.info.run_id}: {first_line(exc)}"
            ) from exc
        return Path(path).read_text()


def rerun_config(cfg: DictConfig, store: Store, seed: int | None = None) -> DictConfig:
    """The record's config with today's store as the tracking target (and optionally a new seed)."""
    out = upgrade_record(cfg)
    OmegaConf.update(out, "tracking.enabled", True, force_add=True)
    OmegaConf.update(out, "tracking.uri", store.uri, force_add=True)
    OmegaConf.update(out, "tracking.artifact_root", store.artifact_root, force_add=True)
    for key, default in (("experiment", "sine"), ("log_model", True), ("log_plots", True)):
        if OmegaConf.select(out, f"tracking.{key}") is None:
            OmegaConf.update(out, f"tracking.{key}", default, force_add=True)
    OmegaConf.update(out, "paths.store", str(store.folder), force_add=True)
    for key, default in (("jit_compile", False), ("threads", None)):
        if OmegaConf.select(out, f"trainer.{key}", default="<absent>") == "<absent>":
            OmegaConf.update(out, f"trainer.{key}", default, force_add=True)
    if seed is not None:
        out.seed = seed
    return out


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
    return name.endswith(("_seconds", "_time", "_secs"))


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


def metric_series(client: Any, run: Any) -> dict[str, Series]:
    """Every metric of a run as step -> value (the last value logged at each step)."""
    out: dict[str, Series] = {}
    for name in run.data.metrics:
        history = sorted(
            client.get_metric_history(run.info.run_id, name), key=lambda m: m.timestamp
        )
        out[name] = {m.step: m.value for m in history}
    return out


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


def train_again(
    cfg: DictConfig,
    name: str,
    overrides: Sequence[str],
    tags: dict[str, Any],
    parent_run_id: str | None = None,
) -> tuple[str, float]:
    """Train cfg as a new run (no pruning); returns its id and validation MSE (NaN if diverged)."""
    from sweep import console
    from sweep.pipeline import execute
    from sweep.tracking import Tracker
    from sweep.training import Diverged

    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    tracker.setup()
    run = tracker.start_run(name, parent_run_id, tags)
    status, value = "FAILED", math.nan
    try:
        result = execute(cfg, run, overrides, [console.epoch_counter(name, cfg.trainer.epochs)])
        status, value = "FINISHED", result.val_mse
    except Diverged as exc:
        run.set_tags({"fail_reason": str(exc)})
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        run.end(status)
    return run.run_id, value


def rerun(run_id: str, store: Store, tolerance: float | None = None) -> int:
    """Replay one run from its record, log it as a new run, print and judge the comparison."""
    from sweep import console
    from sweep.tracking import MlflowClient, check_reachable

    check_reachable(store.uri)
    client = MlflowClient(store.uri)
    record = load_record(client, run_id, store)
    name = record.run.info.run_name or run_id[:8]
    console.say(
        f"rerunning run {run_id} ({name}) from its logged config; new run in {mask_url(store.uri)}"
    )
    tags = {"sweep.kind": "rerun", "sweep.rerun_of": run_id}
    cfg = rerun_config(record.cfg, store)
    if record.run.data.tags.get("sweep.state") == "PRUNED":
        # Replayed up to the epoch it was pruned at, so its final MSEs compare too.
        cfg.trainer.epochs = (
            len(client.get_metric_history(run_id, "val_loss")) or cfg.trainer.epochs
        )
    new_id, _ = train_again(cfg, f"rerun-{name}", record.overrides, tags)
    new = load_record(client, new_id, store)
    differences = environment_differences(record.replay, new.replay)
    tol, why = choose_tolerance(tolerance, differences)
    rows = compare_runs(metric_series(client, record.run), metric_series(client, new.run), tol)
    failed = [r.name for r in rows if r.failed]
    verdict = "differs" if failed else ("identical" if _all_identical(rows) else "within tolerance")
    report = _rerun_report(record, new_id, differences, tol, why, rows, verdict)
    console.say(report)
    _log_outcome(client, new_id, rows, differences, tol, verdict)
    return EXIT_DIFFERS if failed else EXIT_SAME


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
    client: Any,
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
    client.log_text(run_id, json.dumps(data, indent=2, default=str), "rerun_comparison.json")
    client.set_tag(run_id, "sweep.rerun_verdict", verdict)
    client.set_tag(run_id, "sweep.rerun_tolerance", str(tol))


# --------------------------------------------------------------------------- seed robustness


def open_study(storage: str, name: str) -> Any:
    """Load a study without creating anything; one line when it is not there."""
    import optuna

    if storage.startswith("sqlite:") and not Path(sqlite_path(storage)).is_file():
        raise ConfigError(f"no Optuna storage at {sqlite_path(storage)}; pass --storage URL")
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ConfigError(
            f"no study {name!r} in {mask_url(storage)}; studies there: {', '.join(names) or 'none'}"
        ) from None


@dataclass
class Robustness:
    """One configuration's validation MSE: as the study found it and over new seeds."""

    trial: int
    run_id: str
    params: dict[str, Any]
    original: float
    seeds: list[int]
    values: list[float]

    def stats(self) -> dict[str, float]:
        finite = [v for v in self.values if math.isfinite(v)]
        if not finite:
            return {"mean": math.inf, "std": math.nan, "min": math.nan, "max": math.nan}
        mean = sum(finite) / len(finite)
        var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1) if len(finite) > 1 else 0.0
        return {"mean": mean, "std": math.sqrt(var), "min": min(finite), "max": max(finite)}


def robustness_rows(results: Sequence[Robustness]) -> list[dict[str, Any]]:
    """The table: per configuration its stats over new seeds and its rank before and after."""
    by_mean = sorted(results, key=lambda r: (r.stats()["mean"], r.original))
    mean_rank = {r.trial: i + 1 for i, r in enumerate(by_mean)}
    rows = []
    for rank, r in enumerate(sorted(results, key=lambda r: r.original), start=1):
        rows.append(
            {
                "trial": r.trial,
                "run_id": r.run_id,
                **{k.rsplit(".", 1)[-1]: v for k, v in r.params.items()},
                "val_mse_original": r.original,
                **{f"val_mse_{k}": v for k, v in r.stats().items()},
                "n_seeds": len(r.values),
                "n_failed": sum(not math.isfinite(v) for v in r.values),
                "seeds": " ".join(map(str, r.seeds)),
                "rank_original": rank,
                "rank_by_mean": mean_rank[r.trial],
            }
        )
    return rows


def ranking_holds(rows: Sequence[dict[str, Any]]) -> bool:
    return all(r["rank_original"] == r["rank_by_mean"] for r in rows)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(_cell(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def csv_table(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def robust(study_name: str, storage: str, store: Store, top: int, seeds: int) -> int:
    """Rerun the study's best trials with seed offsets 1..seeds; log the table to its parent."""
    from sweep import console
    from sweep.tracking import MlflowClient, check_reachable

    study = open_study(storage, study_name)
    check_reachable(store.uri)
    client = MlflowClient(store.uri)
    parent_id = _parent_of(study, client, store)
    trials = _best_trials(study, top)
    records = [load_record(client, _run_of(t), store) for t in trials]
    console.say(
        f"study {study_name!r}: rerunning its {len(trials)} best trial(s) with {seeds} new seed(s) "
        f"each, as child runs of {parent_id}"
    )
    results = [
        _seed_runs(t, rec, store, parent_id, study_name, seeds)
        for t, rec in zip(trials, records, strict=True)
    ]
    rows = robustness_rows(results)
    holds = ranking_holds(rows)
    _log_robustness(client, parent_id, rows, results, holds, seeds)
    console.say(markdown_table(rows))
    console.say(
        f"ranking by mean val MSE over {seeds} seeds {'HOLDS' if holds else 'CHANGES'}; "
        f"best by mean: trial {min(rows, key=lambda r: r['rank_by_mean'])['trial']}; "
        f"table and plot logged to parent run {parent_id} under robust/"
    )
    return EXIT_SAME


def _parent_of(study: Any, client: Any, store: Store) -> str:
    parent_id = study.user_attrs.get("mlflow_parent_run_id")
    if not parent_id:
        raise ConfigError(f"study {study.study_name!r} has no MLflow parent run (tracking=none?)")
    fetch_run(client, parent_id, store)
    return parent_id


def _run_of(trial: Any) -> str:
    run_id = trial.user_attrs.get("mlflow_run_id")
    if not run_id:
        raise ConfigError(f"trial {trial.number} has no MLflow run to read its config from")
    return run_id


def _best_trials(study: Any, top: int) -> list[Any]:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"study {study.study_name!r} has no completed trial yet")
    return sorted(complete, key=lambda t: (t.value, t.number))[:top]


def _seed_runs(
    trial: Any, record: Record, store: Store, parent_id: str, study_name: str, seeds: int
) -> Robustness:
    """One configuration trained with seeds original+1 .. original+seeds, each a child run."""
    from sweep import console

    base = int(record.cfg.seed)
    out = Robustness(trial.number, record.run_id, dict(trial.params), float(trial.value), [], [])
    for offset in range(1, seeds + 1):
        cfg = rerun_config(record.cfg, store, seed=base + offset)
        cfg.tracking.log_model = False  # 25 models nobody loads; the record suffices
        tags = {
            "sweep.kind": "robust",
            "sweep.study_name": study_name,
            "sweep.robust_of": record.run_id,
            "sweep.robust_of_trial": trial.number,
            "sweep.seed_offset": offset,
        }
        name = f"robust-trial-{trial.number}-seed-{base + offset}"
        overrides = [*record.overrides, f"seed={base + offset}"]
        _, value = train_again(cfg, name, overrides, tags, parent_run_id=parent_id)
        out.seeds.append(base + offset)
        out.values.append(value)
        console.say(f"  trial {trial.number} seed {base + offset}: val_mse={value:.4g}")
    return out


def _log_robustness(
    client: Any,
    parent_id: str,
    rows: Sequence[dict[str, Any]],
    results: Sequence[Robustness],
    holds: bool,
    seeds: int,
) -> None:
    """CSV, markdown and JSON tables and the strip/box plot on the study's parent run."""
    from sweep import plots

    summary = {"seeds": seeds, "ranking_holds": holds, "configurations": list(rows)}
    client.log_text(parent_id, csv_table(rows), "robust/seed_robustness.csv")
    client.log_text(parent_id, markdown_table(rows) + "\n", "robust/seed_robustness.md")
    client.log_text(
        parent_id, json.dumps(summary, indent=2, default=str), "robust/seed_robustness.json"
    )
    client.set_tag(parent_id, "robust.ranking_holds", str(holds).lower())
    fig = plots.seed_robustness_figure(
        [f"trial {r.trial}" for r in sorted(results, key=lambda r: r.original)],
        [r.values for r in sorted(results, key=lambda r: r.original)],
        [r.original for r in sorted(results, key=lambda r: r.original)],
    )
    client.log_figure(parent_id, fig, "robust/seed_robustness.png")
    plots.close(fig)


# --------------------------------------------------------------------------- command lines


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        help=f"folder of the local stores (default: ./{DEFAULT_STORE}, or MLFLOW_TRACKING_URI)",
    )
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (overrides --store)")


def _guarded(work: Any) -> int:
    """Known failures as one line and exit 2; SWEEP_TRACEBACK=1 shows the whole story."""
    try:
        return work()
    except ConfigError as exc:
        if os.environ.get("SWEEP_TRACEBACK"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def rerun_command(argv: list[str]) -> int:
    """`python -m sweep rerun RUN_ID [--tolerance X] [--store DIR | --tracking-uri URI]`."""
    parser = argparse.ArgumentParser(
        prog="python -m sweep rerun",
        description="Train a past run again from its MLflow record alone and compare every metric.",
    )
    parser.add_argument("run_id", help="the MLflow run id to replay")
    parser.add_argument(
        "--tolerance",
        type=float,
        help=f"relative tolerance; default 0 (exact) when platform, versions and commit match, "
        f"else {LOOSE_TOLERANCE:g}",
    )
    _store_arguments(parser)
    args = parser.parse_args(argv)
    if args.tolerance is not None and not args.tolerance >= 0:
        parser.error("--tolerance must be >= 0")
    return _guarded(
        lambda: rerun(
            args.run_id.strip(), existing_store(args.store, args.tracking_uri), args.tolerance
        )
    )


def robust_command(argv: list[str]) -> int:
    """`python -m sweep robust STUDY [--top 5] [--seeds 5] [--storage URL] [--store DIR]`."""
    parser = argparse.ArgumentParser(
        prog="python -m sweep robust",
        description="Rerun a study's best trials with new seeds; log the spread to its parent run.",
    )
    parser.add_argument("study", help="the Optuna study name (search.study_name)")
    parser.add_argument("--top", type=int, default=5, help="how many of the best trials (5)")
    parser.add_argument("--seeds", type=int, default=5, help="new seeds per trial (5)")
    parser.add_argument(
        "--storage", help="Optuna storage URL (default: sqlite:///<store>/optuna.db)"
    )
    _store_arguments(parser)
    args = parser.parse_args(argv)
    if args.top < 1 or args.seeds < 1:
        parser.error("--top and --seeds must be positive")

    def work() -> int:
        store = existing_store(args.store, args.tracking_uri)
        storage = args.storage or f"sqlite:///{store.folder}/optuna.db"
        return robust(args.study, storage, store, args.top, args.seeds)

    return _guarded(work)
