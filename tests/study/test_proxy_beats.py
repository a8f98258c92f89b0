"""The heartbeat a gRPC proxy carries (sweep.study.proxy): when a RUNNING trial counts as lost."""

from __future__ import annotations

import datetime
import time

import optuna
from optuna.trial import TrialState

from sweep.study.proxy import BEAT_ATTR, beat_is_stale
from sweep.study.study import _on_stale_trial

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
