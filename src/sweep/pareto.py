"""Several objectives: the Pareto front, and pruning on the first objective by a median rule.

Optuna's pruners refuse multi-objective studies (`Trial.report` raises; optuna issue 3450), so
a trial of such a study records its per-epoch validation loss as a user attribute and is
stopped when it is worse than the median of earlier trials at the same epoch; the rule's
n_startup_trials / n_warmup_steps come from search.pruner (a NopPruner turns it off).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

LOSSES_ATTR = "val_loss_by_epoch"


def median_rule(sweep: Any, trial: optuna.Trial):  # noqa: ANN201
    """An epoch hook: record this epoch's loss; stop training when below the median rule."""
    from sweep.training import StopTraining

    spec = sweep.cfg.search.pruner
    enabled = not str(spec.get("_target_", "")).endswith("NopPruner")
    startup, warmup = spec.get("n_startup_trials", 5), spec.get("n_warmup_steps", 5)
    losses: dict[str, float] = {}

    def hook(log: Any) -> None:
        if not math.isfinite(log.val_loss):
            return
        losses[str(log.epoch)] = log.val_loss
        trial.set_user_attr(LOSSES_ATTR, losses)
        if enabled and log.epoch > warmup:
            median = epoch_median(sweep.study, log.epoch, startup)
            if median is not None and log.val_loss > median:
                raise StopTraining(f"pruned at epoch {log.epoch} (median rule)")

    return hook


def epoch_median(study: optuna.Study, epoch: int, startup: int) -> float | None:
    """Median validation loss at `epoch` over finished trials; None before `startup` of them."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    seen = [t.user_attrs.get(LOSSES_ATTR, {}).get(str(epoch)) for t in done]
    seen = [v for v in seen if v is not None]
    return statistics.median(seen) if len(done) >= startup and seen else None


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
