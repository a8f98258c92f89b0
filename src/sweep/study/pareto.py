"""Several objectives: the Pareto front (their pruning, a median rule, is in pruning.py)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto-optimal complete trials, by trial number."""
    return sorted(study.best_trials, key=lambda t: t.number)


def front_rows(study: optuna.Study, names: list[str], run_attr: str) -> list[dict[str, Any]]:
    """The front as summary.json lists it: trial, each objective's value, params, MLflow run."""
    return [
        {
            "trial": t.number,
            **dict(zip(names, t.values, strict=True)),
            "params": t.params,
            "run_id": t.user_attrs.get(run_attr),
        }
        for t in front(study)
    ]
