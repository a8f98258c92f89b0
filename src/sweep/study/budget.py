"""Budgets every worker of a study obeys: a wall clock for the whole study, and patience.

Both are stamped on the study when it is created (Optuna user attributes), so a worker that
joins later, with any config, stops at the same point; the first worker to see a budget spent
records why on the study, and every worker then asks for no new trial (running ones finish).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

BUDGET_ATTR = "budget"
STOPPED_ATTR = "stopped_by"
COPIED_ATTR = "warm_start_of"  # set on trials copied from an earlier study (warmstart.py)


def stamp(study: optuna.Study, cfg: DictConfig) -> None:
    """Write the study's budget once, at creation: the deadline is absolute wall-clock time."""
    timeout = cfg.search.get("timeout")
    budget = {
        "timeout": timeout,
        "deadline": time.time() + timeout if timeout else None,
        "patience": cfg.search.get("patience"),
    }
    study.set_user_attr(BUDGET_ATTR, budget)


def spent(study: optuna.Study) -> str | None:
    """Why the study takes no new trial (recorded once, for every worker to read), or None."""
    attrs = study.user_attrs
    if attrs.get(STOPPED_ATTR):
        return attrs[STOPPED_ATTR]
    budget = attrs.get(BUDGET_ATTR) or {}
    reason = None
    if budget.get("deadline") and time.time() >= budget["deadline"]:
        reason = f"timeout: the study's {budget['timeout']} s (search.timeout) are used up"
    elif budget.get("patience"):
        since = trials_since_improvement(study)
        if since >= budget["patience"]:
            reason = (
                f"patience: no improvement in the last {since} finished trials "
                f"(search.patience={budget['patience']})"
            )
    if reason:
        study.set_user_attr(STOPPED_ATTR, reason)
    return reason


def trials_since_improvement(study: optuna.Study) -> int:
    """Finished trials since the last one that beat (or, with several objectives, joined the
    front of) every trial before it; copied warm-start trials set the bar but do not count."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    ordered = sorted(finished, key=_finish_order)
    signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    seen: list[list[float]] = []
    since = 0
    for trial in ordered:
        copied = COPIED_ATTR in trial.user_attrs
        if trial.state == TrialState.COMPLETE:
            point = [s * v for s, v in zip(signs, trial.values, strict=True)]
            improved = not any(_weakly_dominates(old, point) for old in seen)
            seen.append(point)
            if improved:
                since = 0
                continue
        if not copied:
            since += 1
    return since


def _finish_order(trial: FrozenTrial) -> tuple[Any, ...]:
    """Copied trials first, then by the time each finished (workers finish out of order)."""
    finished = trial.datetime_complete.timestamp() if trial.datetime_complete else 0.0
    return (COPIED_ATTR not in trial.user_attrs, finished, trial.number)


def _weakly_dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is at least as good as b in every objective (all minimised here)."""
    return all(x <= y for x, y in zip(a, b, strict=True))
