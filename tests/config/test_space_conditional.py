"""Conditional spaces: a choice opens its own sub-space; keys of other branches stay absent."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from sweep.cli import runner
from sweep.config.checks import prepare
from sweep.config.space import (
    apply_params,
    baseline_params,
    fingerprint,
    misfit,
    parse_space,
    sample,
)
from sweep.core.errors import ConfigError
from sweep.study.study import load_existing

SGD_ONLY = {"optimizer.learning_rate", "optimizer.momentum"}
ADAM_ONLY = {"optimizer.learning_rate", "optimizer.beta_1"}


def test_the_conditional_space_parses_into_branches(compose_cfg):
    cfg = prepare(compose_cfg("search=conditional"))
    space = parse_space(cfg.search.space, cfg)
    assert space["optimizer"] == CategoricalDistribution(["sgd", "adam"])
    assert set(space.branches["optimizer"]["sgd"]) == SGD_ONLY
    assert space.branches["optimizer"]["adam"]["optimizer.beta_1"] == FloatDistribution(0.8, 0.99)
    # The tutorial's point: plain SGD at 0.01 with no momentum, and no Adam key at all.
    assert baseline_params(cfg, space) == {
        "model.depth": 4,
        "model.width": 20,
        "model.activation": "tanh",
        "optimizer": "sgd",
        "optimizer.learning_rate": 0.01,
        "optimizer.momentum": 0.0,
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+search.space.when.optimizer.lion.optimizer.learning_rate='interval(0.1, 1.0)'",
            "'lion' is not one of sgd, adam",
        ),
        ("+search.space.when.model.depth.3.model.width='choice(8, 16)'", "is not a choice"),
        (
            "+search.space.when.optimizer.adam.optimizer.beta_9='interval(0.1, 0.2)'",
            "'optimizer.beta_9' does not exist",
        ),
        ("+search.space.when.optimizer.sgd.model.width='choice(8, 16)'", "already swept"),
    ],
)
def test_bad_branches_name_the_key(compose_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        prepare(compose_cfg("search=conditional", override))


def test_absent_parameters_stay_absent(compose_cfg):
    cfg = prepare(compose_cfg("search=conditional"))
    space = parse_space(cfg.search.space, cfg)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        params = sample(trial, space)
        study.tell(trial, 1.0)
        branch = SGD_ONLY if params["optimizer"] == "sgd" else ADAM_ONLY
        assert {k for k in params if k.startswith("optimizer.")} == branch
        assert misfit(space, params) is None
        built = apply_params(cfg, params).optimizer
        assert built._target_.endswith("SGD" if params["optimizer"] == "sgd" else "Adam")
        seen.add(params["optimizer"])
    assert seen == {"sgd", "adam"}
    assert misfit(space, {**params, "optimizer.nesterov": True}) == (
        "optimizer.nesterov is not in the space"
    )


def test_a_changed_branch_changes_the_fingerprint(compose_cfg):
    base = fingerprint(prepare(compose_cfg("search=conditional")))[0]
    narrower = "search.space.when.optimizer.sgd.optimizer.momentum='interval(0.0, 0.5)'"
    assert fingerprint(prepare(compose_cfg("search=conditional", narrower)))[0] != base


def test_a_conditional_sweep_records_only_the_taken_branch(tmp_path):
    code = runner.main(
        [
            "sweep",
            "experiment=tiny",
            "tracking=none",
            "search=conditional",
            "search/pruner=none",
            "search.n_trials=4",
            f"paths.store={tmp_path}",
        ]
    )
    assert code == 0
    study = load_existing(f"sqlite:///{tmp_path}/optuna.db", "sine-mlp-conditional")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4
    for t in trials:
        branch = SGD_ONLY if t.params["optimizer"] == "sgd" else ADAM_ONLY
        assert {k for k in t.params if k.startswith("optimizer.")} == branch
