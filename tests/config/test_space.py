"""Hydra's sweep grammar -> Optuna distributions, and the study's reference point."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweep.config.checks import prepare
from sweep.config.space import apply_params, baseline_params, fingerprint, parse_space
from sweep.core.errors import ConfigError


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("choice(tanh, relu)", CategoricalDistribution(["tanh", "relu"])),
        ("int(interval(1, 6))", IntDistribution(1, 6)),
        ("interval(1, 6)", FloatDistribution(1.0, 6.0)),  # Hydra's interval is a float range
        ("interval(0.5, 2.0)", FloatDistribution(0.5, 2.0)),
        ("tag(log, interval(0.001, 0.3))", FloatDistribution(0.001, 0.3, log=True)),
        ("tag(log, int(interval(8, 64)))", IntDistribution(8, 64, log=True)),
        # Hydra's range excludes its end; Optuna's int bounds include theirs.
        ("range(1, 5)", IntDistribution(1, 4)),
        ("range(2, 10, 2)", IntDistribution(2, 8, step=2)),
        ("choice(1, 2, 3)", CategoricalDistribution([1, 2, 3])),
    ],
)
def test_expression_maps_to_distribution(expr, expected):
    assert parse_space({"model.depth": expr}) == {"model.depth": expected}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"model": {"depth": "interval(1,"}}, "cannot parse"),
        ({"model.depth": "3"}, "is a single value"),
        ({"model.depht": "choice(1, 2)"}, "'model.depht' does not exist"),
        ({"optimizer.learning_rate": "tag(log, interval(0, 1))"}, "positive low bound"),
    ],
)
def test_bad_space_names_the_key(compose_cfg, space, message):
    cfg = prepare(compose_cfg())
    with pytest.raises(ConfigError, match=message):
        parse_space(space, cfg)


def test_default_space_contains_the_baseline(compose_cfg):
    cfg = prepare(compose_cfg())
    space = parse_space(cfg.search.space, cfg)
    assert set(space) == {
        "model.depth",
        "model.width",
        "model.activation",
        "optimizer.learning_rate",
    }
    assert {"tanh", "relu", "sigmoid", "elu"} <= set(space["model.activation"].choices)
    assert baseline_params(cfg, space) == {
        "model.depth": 4,
        "model.width": 20,
        "model.activation": "tanh",
        "optimizer.learning_rate": 0.01,
    }


def test_apply_params_sets_dotted_keys(compose_cfg):
    cfg = prepare(compose_cfg())
    out = apply_params(cfg, {"model.depth": 2, "optimizer.learning_rate": 0.05})
    assert (out.model.depth, out.optimizer.learning_rate, cfg.model.depth) == (2, 0.05, 4)


def test_fingerprint_ignores_trial_count_but_not_the_space(compose_cfg):
    base = fingerprint(prepare(compose_cfg()))[0]
    assert fingerprint(prepare(compose_cfg("search.n_trials=99")))[0] == base
    narrower = prepare(compose_cfg("search.space.model.depth='int(interval(1, 3))'"))
    assert parse_space(narrower.search.space, narrower)["model.depth"] == IntDistribution(1, 3)
    assert fingerprint(narrower)[0] != base
    fewer = prepare(compose_cfg("~search.space.model.width"))
    assert "model.width" not in parse_space(fewer.search.space, fewer)
    assert fingerprint(prepare(compose_cfg("trainer.epochs=3")))[0] != base
