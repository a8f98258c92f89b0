"""Budgets shared by all workers: a study-wide timeout and patience, stamped on the study."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState, create_trial

from sweep.cli import runner
from sweep.study.budget import STOPPED_ATTR, trials_since_improvement
from sweep.study.study import counts, load_existing

FIXED = ("~search.space.model", "~search.space.optimizer")  # every trial is the tutorial's
TINY = ("experiment=tiny", "tracking=none", "search/pruner=none")


def _study(store):
    return load_existing(f"sqlite:///{store}/optuna.db", "sine-mlp")


def test_patience_counts_trials_since_the_last_improvement():
    study = optuna.create_study(directions=["minimize", "minimize"])
    for values in ([3, 3], [2, 4], [2.5, 3.5], [4, 4], [1, 5], [5, 5]):
        study.add_trial(create_trial(values=values))
    study.add_trial(create_trial(state=TrialState.PRUNED))
    # [2.5, 3.5] joined the front, [1, 5] too; [5, 5] and the pruned trial did not.
    assert trials_since_improvement(study) == 2


def test_patience_stops_every_worker(tmp_path, capsys):
    store = f"paths.store={tmp_path}"
    args = [*TINY, *FIXED, "search.n_trials=10", store]
    assert runner.main(["sweep", *args, "search.patience=2"]) == 0
    study = _study(tmp_path)
    # Identical trials: trial 0 sets the best, trials 1 and 2 cannot beat it.
    assert counts(study)[0] == 3
    assert study.user_attrs[STOPPED_ATTR].startswith("patience: no improvement in the last 2")
    assert "stopped early by its budget: patience" in capsys.readouterr().out
    # A worker joining later without the setting obeys the study's.
    assert runner.main(["worker", *args]) == 0
    assert counts(_study(tmp_path))[0] == 3
    assert "stopped early by its budget: patience" in capsys.readouterr().out


def test_timeout_is_the_studys_clock_for_every_worker(tmp_path, capsys):
    args = [*TINY, *FIXED, "search.n_trials=200", f"paths.store={tmp_path}"]
    assert runner.main(["sweep", *args, "search.timeout=2"]) == 0
    done = counts(_study(tmp_path))[0]
    assert 1 <= done < 200
    assert "stopped early by its budget: timeout" in capsys.readouterr().out
    assert runner.main(["worker", *args]) == 0
    assert counts(_study(tmp_path))[0] == done
    assert _study(tmp_path).user_attrs[STOPPED_ATTR].startswith("timeout: the study's 2 s")


def test_a_bad_budget_is_refused_in_one_line(tmp_path, capsys):
    assert runner.main(["sweep", *TINY, "search.timeout=-1", f"paths.store={tmp_path}"]) == 2
    assert "search.timeout must be a positive number" in capsys.readouterr().err
    assert not (tmp_path / "optuna.db").exists()
