"""Every sampler and pruner offered in conf/ runs a real (tiny) study, with pruning on."""

from __future__ import annotations

import importlib.util
import warnings

import pytest
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from sweep.cli import runner
from sweep.study.study import load_existing

SAMPLERS = ("tpe", "tpe_multivariate", "random", "cmaes", "qmc", "gp", "nsgaii")
PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "wilcoxon", "none")
# Small and quick: 3 trials of 3 epochs on a coarse grid; each pruner judges from epoch 1.
QUICK = ("experiment=tiny", "tracking=none", "search.n_trials=3", "trainer.epochs=3",
         "data.step=0.05")  # fmt: skip


def _run(store, *overrides):
    with warnings.catch_warnings():  # QMC, GP, multivariate TPE: Optuna's "experimental" note
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        assert runner.main(["sweep", *QUICK, f"paths.store={store}", *overrides]) == 0
    study = load_existing(f"sqlite:///{store}/optuna.db", "sine-mlp")
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_runs_a_study(tmp_path, sampler):
    if sampler == "gp" and importlib.util.find_spec("torch") is None:
        pytest.skip("GPSampler needs torch (pip install 'sweep[gp]')")
    trials = _run(tmp_path, f"search/sampler={sampler}", "search/pruner=median_tiny")
    assert len(trials) == 3
    assert len({tuple(sorted(t.params.items())) for t in trials}) > 1  # it sampled, not repeated


@pytest.mark.parametrize("pruner", PRUNERS)
def test_each_pruner_runs_a_study(tmp_path, pruner):
    overrides = [f"search/pruner={pruner}"]
    if pruner in ("median", "percentile"):
        overrides += ["search.pruner.n_startup_trials=1", "search.pruner.n_warmup_steps=0"]
    if pruner in ("hyperband", "successive_halving"):
        overrides += ["search.pruner.min_resource=1"]
    trials = _run(tmp_path, *overrides)
    assert len(trials) == 3
    assert all(t.intermediate_values for t in trials)  # every epoch reached the pruner
