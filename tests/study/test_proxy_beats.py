"""The heartbeat a gRPC proxy carries (sweep.study.proxy): when a RUNNING trial counts as lost,
and how a lost trial's retry is queued."""

from __future__ import annotations

import datetime
import time

import optuna
from optuna.trial import TrialState

from sweep.study.proxy import BEAT_ATTR, beat_is_stale
from sweep.study.study import (
    LOST_BEFORE_BEAT,
    RETRY_PENDING_SECONDS,
    RUN_ATTR,
    _on_stale_trial,
    counts,
    retry_pending,
)
from sweep.tracking import NullTracker

GRACE = 10


def running(beat_age: float | None, start_age: float) -> optuna.trial.FrozenTrial:
    """A RUNNING trial started `start_age` s ago whose last beat is `beat_age` s old (or none)."""
    now = time.time()
    trial = optuna.trial.create_trial(state=TrialState.RUNNING)
    trial.datetime_start = datetime.datetime.fromtimestamp(now - start_age)
    if beat_age is not None:
        trial.system_attrs = {BEAT_ATTR: now - beat_age}
    return trial


def test_a_trial_silent_past_the_grace_period_is_stale():
    assert beat_is_stale(running(beat_age=GRACE + 5, start_age=100), GRACE)
    assert not beat_is_stale(running(beat_age=1, start_age=100), GRACE)


def test_a_trial_that_never_beat_is_stale_only_past_the_grace_period_of_its_start():
    assert beat_is_stale(running(beat_age=None, start_age=GRACE + 5), GRACE)
    assert not beat_is_stale(running(beat_age=None, start_age=1), GRACE)


def test_a_beat_from_before_the_start_is_not_the_trials_own():
    """A retry starts with its original's attributes: its old beat must not fail it at once."""
    assert not beat_is_stale(running(beat_age=GRACE + 50, start_age=1), GRACE)


def test_a_retry_is_queued_without_its_originals_beat(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    storage.set_trial_system_attr(trial._trial_id, BEAT_ATTR, time.time() - 100)
    storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    _on_stale_trial(None)(study, storage.get_trial(trial._trial_id))
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.params == trial.params and retry.system_attrs["failed_trial"] == trial.number
    assert BEAT_ATTR not in retry.system_attrs
    storage.engine.dispose()


def stale_failed(study: optuna.Study, reason: str | None = None) -> optuna.trial.FrozenTrial:
    """A trial asked, then failed as the stale check fails one (with `reason`, if given)."""
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    if reason:
        trial.set_user_attr("fail_reason", reason)
    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return study._storage.get_trial(trial._trial_id)


def test_a_stale_trial_holds_its_slot_until_its_retry_is_queued(tmp_path):
    """Between the stale check's two writes (fail, then queue the retry) no worker may take the
    slot for a fresh trial: the retry would wait for ever once the target is met."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(storage=storage)
    lost = stale_failed(study)
    stale_failed(study, "surplus: the target was reached by other workers")  # never retried
    lost_early = stale_failed(study, LOST_BEFORE_BEAT)  # retried: it holds a slot too
    assert counts(study) == (0, [lost.number, lost_early.number])
    _on_stale_trial(None)(study, lost)
    assert counts(study) == (0, [lost_early.number])
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert study.ask().number == retry.number  # what the freed slot is asked for
    later = datetime.datetime.now() + datetime.timedelta(seconds=RETRY_PENDING_SECONDS + 1)
    assert retry_pending(study.get_trials(), now=later) == []  # its failer died: slot freed
    storage.engine.dispose()


class Watching(NullTracker):
    """No tracking; notes what the study held when asked to close a lost trial's run."""

    def __init__(self, study: optuna.Study) -> None:
        self.study, self.waiting_then = study, None

    def terminate(self, *args: object, **kwargs: object) -> None:
        self.waiting_then = len(self.study.get_trials(states=(TrialState.WAITING,)))


def test_a_stale_trials_retry_is_queued_before_its_run_is_closed(tmp_path):
    """A slow (or stopped) tracking server must not hold the retry back."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    trial.set_user_attr(RUN_ATTR, "0" * 32)
    storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    tracker = Watching(study)
    _on_stale_trial(tracker)(study, storage.get_trial(trial._trial_id))
    assert tracker.waiting_then == 1
    storage.engine.dispose()


def test_a_worker_told_failure_without_a_reason_never_holds_a_retry_slot(tmp_path):
    """Only the stale check fails a trial without a `fail_reason`: a worker's own FAIL (an
    exception with an empty message) says so, and is not mistaken for one awaiting its retry."""
    from sweep.study.worker import Outcome, tell

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    assert tell(study, trial, Outcome(TrialState.FAIL, reason=""))
    (failed,) = study.get_trials()
    assert failed.user_attrs["fail_reason"] == "no reason given"
    assert counts(study) == (0, [])
    storage.engine.dispose()
