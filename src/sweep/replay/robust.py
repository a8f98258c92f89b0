"""`python -m sweep robust`: a study's best trials trained again with new seeds.

The best of 30 trials is partly the luckiest (plain SGD's last-epoch validation MSE jumps by 10x
between epochs at a high learning rate); the spread over new seeds says how much.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweep.config.stores import Store
from sweep.core.errors import EXIT_OK, ConfigError
from sweep.replay.record import Record, load_record, rerun_config, train_again


@dataclass
class Robustness:
    """One configuration's objective (the study's first): as the study found it and over new
    seeds."""

    trial: int
    run_id: str
    params: dict[str, Any]
    original: float
    seeds: list[int]
    values: list[float]
    objective: str = "val_mse"
    direction: str = "minimize"

    @property
    def sign(self) -> float:
        """Sorting by sign * value puts the best first, whichever way the objective goes."""
        return -1.0 if self.direction == "maximize" else 1.0

    def stats(self) -> dict[str, float]:
        finite = [v for v in self.values if math.isfinite(v)]
        if not finite:  # every seed diverged: the worst there is
            return {"mean": self.sign * math.inf, "std": math.nan, "min": math.nan, "max": math.nan}
        mean = sum(finite) / len(finite)
        var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1) if len(finite) > 1 else 0.0
        return {"mean": mean, "std": math.sqrt(var), "min": min(finite), "max": max(finite)}


def robustness_rows(results: Sequence[Robustness]) -> list[dict[str, Any]]:
    """The table: per configuration its stats over new seeds and its rank before and after.

    Columns are named by the objective (`val_mse_mean`, `val_accuracy_mean`, ...), and ranks
    follow its direction.
    """
    by_mean = sorted(results, key=lambda r: (r.sign * r.stats()["mean"], r.sign * r.original))
    mean_rank = {r.trial: i + 1 for i, r in enumerate(by_mean)}
    rows = []
    for rank, r in enumerate(sorted(results, key=lambda r: r.sign * r.original), start=1):
        rows.append(
            {
                "trial": r.trial,
                "run_id": r.run_id,
                **{k.rsplit(".", 1)[-1]: v for k, v in r.params.items()},
                f"{r.objective}_original": r.original,
                **{f"{r.objective}_{k}": v for k, v in r.stats().items()},
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


def robust_command(
    study: str, store: Store, top: int = 5, seeds: int = 5, storage: str | None = None
) -> int:
    """Rerun the study's best trials with seed offsets 1..seeds; log the table to its parent."""
    from sweep.study.study import load_existing

    if top < 1 or seeds < 1:
        raise ConfigError(f"--top and --seeds must be positive, got {top} and {seeds}")
    found = load_existing(storage or f"sqlite:///{store.folder}/optuna.db", study)
    evaluate(found, store, top, seeds)
    return EXIT_OK


def evaluate(found: Any, store: Store, top: int, seeds: int) -> dict[str, Any]:
    """The top trials retrained with new seeds, logged to the parent; returns the best by mean.

    `make robust` and a sweep's `search.champion=robust` both come here.
    """
    from sweep.core import console
    from sweep.study.study import ranked_trials
    from sweep.tracking import Reader, check_reachable

    check_reachable(store.uri)
    reader = Reader(store.uri)
    parent_id = _parent_of(found, reader)
    trials = ranked_trials(found, top)
    records = [load_record(reader, _run_of(t)) for t in trials]
    console.say(
        f"study {found.study_name!r}: rerunning its {len(trials)} best trial(s) with {seeds} new "
        f"seed(s) each, as child runs of {parent_id}"
    )
    results = [
        _seed_runs(t, rec, store, parent_id, found.study_name, seeds)
        for t, rec in zip(trials, records, strict=True)
    ]
    rows = robustness_rows(results)
    holds = ranking_holds(rows)
    name = results[0].objective
    _log_robustness(reader, parent_id, rows, results, holds, seeds)
    console.say(markdown_table(rows))
    best = min(rows, key=lambda r: r["rank_by_mean"])
    console.say(
        f"ranking by mean {name} over {seeds} seeds {'HOLDS' if holds else 'CHANGES'}; "
        f"best by mean: trial {best['trial']}; "
        f"table and plot logged to parent run {parent_id} under robust/"
    )
    return champion_of(best, name, seeds)


def champion_of(best: dict[str, Any], objective: str, seeds: int) -> dict[str, Any]:
    """What the registry and the summary keep of the best configuration by mean."""
    return {
        "trial": best["trial"],
        "run_id": best["run_id"],
        "objective": objective,
        f"{objective}_mean": best[f"{objective}_mean"],
        f"{objective}_std": best[f"{objective}_std"],
        "n_seeds": seeds,
    }


def _parent_of(study: Any, reader: Any) -> str:
    parent_id = study.user_attrs.get("mlflow_parent_run_id")
    if not parent_id:
        raise ConfigError(f"study {study.study_name!r} has no MLflow parent run (tracking=none?)")
    reader.run(parent_id)
    return parent_id


def _run_of(trial: Any) -> str:
    run_id = trial.user_attrs.get("mlflow_run_id")
    if not run_id:
        raise ConfigError(f"trial {trial.number} has no MLflow run to read its config from")
    return run_id


def _seed_runs(
    trial: Any, record: Record, store: Store, parent_id: str, study_name: str, seeds: int
) -> Robustness:
    """One configuration trained with seeds original+1 .. original+seeds, each a child run, on
    the study's first objective (`trial.values[0]`: a study of several has no `trial.value`)."""
    from sweep.config.space import objectives
    from sweep.core import console

    base = int(record.cfg.seed)
    objective, direction = objectives(record.cfg)[0]
    original = float(trial.values[0])
    out = Robustness(
        trial.number, record.run_id, dict(trial.params), original, [], [], objective, direction
    )
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
        console.say(
            f"  trial {trial.number} seed {base + offset}: "
            f"{objective}={console.fmt_metric(objective, value)}"
        )
    return out


def _log_robustness(
    reader: Any,
    parent_id: str,
    rows: Sequence[dict[str, Any]],
    results: Sequence[Robustness],
    holds: bool,
    seeds: int,
) -> None:
    """CSV, markdown and JSON tables and the strip/box plot on the study's parent run."""
    from sweep.train import plots

    summary = {
        "seeds": seeds,
        "objective": results[0].objective,
        "ranking_holds": holds,
        "configurations": list(rows),
    }
    parent = reader.open_run(parent_id)
    parent.log_text(csv_table(rows), "robust/seed_robustness.csv")
    parent.log_text(markdown_table(rows) + "\n", "robust/seed_robustness.md")
    parent.log_json(summary, "robust/seed_robustness.json")
    parent.set_tags({"robust.ranking_holds": str(holds).lower()})
    ordered = sorted(results, key=lambda r: r.sign * r.original)
    first = results[0]
    fig = plots.seed_robustness_figure(
        [f"trial {r.trial}" for r in ordered],
        [r.values for r in ordered],
        [r.original for r in ordered],
        ylabel="validation MSE" if first.objective == "val_mse" else first.objective,
        log=first.direction == "minimize",
    )
    parent.log_figure(fig, "robust/seed_robustness.png")
    plots.close(fig)


def robust_champion(sweep: Any, summary: dict[str, Any]) -> dict[str, Any] | None:
    """With search.champion=robust, once the study is finished: its top search.robust.top trials
    trained again with search.robust.seeds new seeds each; the best mean is the champion."""
    from pathlib import Path

    from sweep.study.summary import finished

    if sweep.cfg.search.get("champion") != "robust" or summary["best_trial"] is None:
        return None
    if sweep.parent_run_id is None or not finished(sweep, summary):
        return None
    store = Store(sweep.cfg.tracking.uri, Path(sweep.cfg.paths.store))
    top, seeds = sweep.cfg.search.robust.top, sweep.cfg.search.robust.seeds
    return {"by": "robust", **evaluate(sweep.study, store, top, seeds)}
