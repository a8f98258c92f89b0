"""Per-epoch pruning that costs microseconds: decide on a snapshot, write in batches.

Optuna's `trial.report` + `trial.should_prune` make two storage round trips every epoch (a
commit, then a read of the study's trials): on the tutorial's trial they cost more than the
epochs themselves (`make bench`, trial part). A read-only pruner (median, percentile,
threshold, patient, Wilcoxon, none) looks only at finished trials, which no epoch of this
trial changes, and at this trial's own values. So it decides here, on a snapshot of the study
taken when the trial starts and on the values kept here; the values reach the storage in one
transaction every `FLUSH_SECONDS` (so optuna-dashboard still follows a long trial) and when
training ends, before the trial is told. A pruner that writes to the storage as it decides
(successive halving, Hyperband, a user's own) keeps Optuna's per-epoch calls: slower, same
decisions. With one worker the decisions are the same as per-epoch calls; with several, a trial
finished by another worker during this one is seen by the next trial, not by this one.

Optuna's pruners refuse multi-objective studies (optuna issue 3450): there a trial's per-epoch
first-objective loss is kept as a user attribute and the trial stops when worse than the
median of earlier trials at the same epoch (`search.pruner`'s n_startup_trials /
n_warmup_steps; a NopPruner turns it off).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Container
from typing import TYPE_CHECKING, Any

import optuna
from optuna.pruners import (
    MedianPruner,
    NopPruner,
    PatientPruner,
    PercentilePruner,
    ThresholdPruner,
    WilcoxonPruner,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweep.core.errors import ConfigError
from sweep.study.storage import again_if_dropped

if TYPE_CHECKING:
    from sweep.train.loop import EpochLog

FLUSH_SECONDS = 2.0
LOSSES_ATTR = "val_loss_by_epoch"  # the median rule's per-epoch losses, on each trial
# Exact types: a subclass (a user's own pruner) may write as it decides.
_READ_ONLY = (MedianPruner, PercentilePruner, ThresholdPruner, NopPruner, WilcoxonPruner)


def check_direction(pruner: optuna.pruners.BasePruner, directions: list[StudyDirection]) -> None:
    """Refuse a pruner that would rank the losses backwards: one that writes as it decides is
    Optuna's own code, which reads losses in the study's direction, wrong when it maximizes."""
    if len(directions) == 1 and directions[0] == StudyDirection.MAXIMIZE and not reads_only(pruner):
        raise ConfigError(
            f"search.pruner: {type(pruner).__name__} ranks each epoch's validation loss in the "
            "study's direction, and this study maximizes; use search/pruner=median, percentile "
            "or wilcoxon (they rank losses lowest-first), or search/pruner=none"
        )


def reads_only(pruner: optuna.pruners.BasePruner) -> bool:
    """Whether `pruner` decides from what it reads alone (it writes nothing to the storage)."""
    if type(pruner) is PatientPruner:
        inner = pruner._wrapped_pruner  # no public accessor
        return inner is None or reads_only(inner)
    return type(pruner) in _READ_ONLY


class Snapshot:
    """The study as a read-only pruner sees it, fixed when a trial starts.

    Its direction is MINIMIZE whatever the objective's: the values a pruner compares are
    validation losses, lower being better even when the study maximizes val_accuracy (read with
    the study's own direction, a median pruner would stop the trials with the lowest losses).
    """

    def __init__(self, study: optuna.Study) -> None:
        self.direction = StudyDirection.MINIMIZE
        self.directions = [self.direction]
        self.objective_direction = study.directions[0]
        self.trials = study.get_trials(deepcopy=False)

    def get_trials(
        self, deepcopy: bool = False, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return [t for t in self.trials if states is None or t.state in states]

    @property
    def best_trial(self) -> FrozenTrial:
        complete = self.get_trials(states=(TrialState.COMPLETE,))
        if not complete:
            raise ValueError("no trial is complete yet")
        pick = max if self.objective_direction == StudyDirection.MAXIMIZE else min
        return pick(complete, key=lambda t: t.value)


class Pruning:
    """An epoch hook for one trial: record the validation loss, stop training when told to.

    Call `flush()` when training ends: the values must be stored before the trial is told (a
    pruned trial's value is its last reported one).
    """

    def __init__(self, study: optuna.Study, trial: optuna.Trial, spec: Any = None) -> None:
        self.study, self.trial = study, trial
        self.values: dict[int, float] = {}
        self.written: set[int] = set()
        self.flushed_at = time.monotonic()
        self.several = len(study.directions) > 1
        self.pruner = study.pruner
        self.fast = self.several or reads_only(self.pruner)
        if self.several:
            self.rule = _MedianRule(study, spec)
        elif self.fast:
            self.snapshot = Snapshot(study)
            self.frozen = copy.copy(study._storage.get_trial(trial._trial_id))
            self.frozen.intermediate_values = self.values  # the pruner sees this trial's values

    def __call__(self, log: EpochLog) -> None:
        from sweep.train.loop import StopTraining  # here: importing this module needs no TensorFlow

        if not math.isfinite(log.val_loss):
            return
        if not self.fast:  # a pruner that writes as it decides: Optuna's own calls
            self.trial.report(log.val_loss, log.epoch)
            if self.trial.should_prune():
                raise StopTraining(f"pruned at epoch {log.epoch}")
            return
        self.values[log.epoch] = log.val_loss
        if time.monotonic() - self.flushed_at > FLUSH_SECONDS:
            self.flush()
        if self.several:
            if self.rule.prune(log.epoch, log.val_loss):
                raise StopTraining(f"pruned at epoch {log.epoch} (median rule)")
        elif self.pruner.prune(self.snapshot, self.frozen):
            raise StopTraining(f"pruned at epoch {log.epoch}")

    def flush(self) -> None:
        """Store the values not stored yet, in one transaction where the storage allows it."""
        self.flushed_at = time.monotonic()
        new = {k: v for k, v in self.values.items() if k not in self.written}
        if not new:
            return
        if self.several:
            self.trial.set_user_attr(LOSSES_ATTR, {str(k): v for k, v in self.values.items()})
        else:
            write_intermediate(self.study._storage, self.trial._trial_id, new)
        self.written |= new.keys()


class _MedianRule:
    """Stop a trial worse than the median of the finished trials' losses at the same epoch."""

    def __init__(self, study: optuna.Study, spec: Any) -> None:
        spec = spec or {}
        self.enabled = not str(spec.get("_target_", "")).endswith("NopPruner")
        self.startup = spec.get("n_startup_trials", 5)
        self.warmup = spec.get("n_warmup_steps", 5)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        self.finished = len(done)
        self.losses = [t.user_attrs.get(LOSSES_ATTR, {}) for t in done]

    def prune(self, epoch: int, loss: float) -> bool:
        if not self.enabled or epoch <= self.warmup or self.finished < self.startup:
            return False
        seen = [v for losses in self.losses if (v := losses.get(str(epoch))) is not None]
        return bool(seen) and loss > statistics.median(seen)


def write_intermediate(storage: Any, trial_id: int, values: dict[int, float]) -> None:
    """New intermediate values of a running trial: one insert in one transaction on an RDB
    storage (Optuna's public call commits each value alone, after two look-ups: ~3 ms apiece
    here), else one public call per value."""
    rdb = getattr(storage, "_backend", storage)
    if not isinstance(rdb, optuna.storages.RDBStorage):
        for step, value in values.items():
            storage.set_trial_intermediate_value(trial_id, step, value)
        return
    _insert_intermediate(rdb, trial_id, values)


@again_if_dropped
def _insert_intermediate(rdb: Any, trial_id: int, values: dict[int, float]) -> None:
    """One transaction: run again whole when the database restarts under it (a batch that
    landed before the drop meets its own rows, an IntegrityError Optuna's session ignores)."""
    from optuna.storages._rdb import models  # no public batch call
    from optuna.storages._rdb.storage import _create_scoped_session

    rows = []
    for step, value in values.items():
        stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
        rows.append(
            models.TrialIntermediateValueModel(
                trial_id=trial_id, step=step, intermediate_value=stored,
                intermediate_value_type=kind,
            )
        )  # fmt: skip
    with _create_scoped_session(rdb.scoped_session, True) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
        rdb.check_trial_is_updatable(trial_id, trial.state)  # as the public call checks
        session.add_all(rows)
