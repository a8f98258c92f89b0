"""The search space belongs with the model: conf/model/<x>.yaml brings
conf/search/space/model/<x>.yaml, its own config is trial 0, and the tutorial's space (and study
fingerprint) is what it was."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from sweep.config.checks import prepare
from sweep.config.space import baseline_params, fingerprint, parse_space

TUTORIAL_SPACE = {
    "model.depth": IntDistribution(1, 6),
    "model.width": IntDistribution(8, 64, log=True),
    "model.activation": CategoricalDistribution(["tanh", "relu", "sigmoid", "elu"]),
}


def test_the_tutorials_space_and_study_are_unchanged(compose_cfg):
    cfg = prepare(compose_cfg())
    space = parse_space(cfg.search.space, cfg)
    assert {k: v for k, v in space.items() if k.startswith("model.")} == TUTORIAL_SPACE
    assert baseline_params(cfg, space) == {
        "model.depth": 4,
        "model.width": 20,
        "model.activation": "tanh",
        "optimizer.learning_rate": 0.01,
    }
    assert fingerprint(cfg)[0] == "fd35fbf222b6c24c"  # as composed before the move: studies resume


@pytest.mark.parametrize(
    ("overrides", "swept", "study"),
    [
        (
            ["data=digits_images", "model=cnn"],
            {"blocks", "filters", "kernel_size", "dropout", "dense"},
            "digits_images-cnn",
        ),
        (["data=sine_sequence", "model=lstm"], {"units", "layers"}, "sine_sequence-lstm"),
        (
            ["data=sine_sequence", "model=conv1d"],
            {"filters", "kernel_size", "layers"},
            "sine_sequence-conv1d",
        ),
    ],
)
def test_each_model_brings_its_own_space_with_its_config_as_trial_0(
    compose_cfg, overrides, swept, study
):
    cfg = prepare(compose_cfg(*overrides))
    # ... and its own study: lstm then conv1d on one store would resume one `-mlp` study, refused
    assert cfg.search.study_name == cfg.tracking.registered_model == study
    space = parse_space(cfg.search.space, cfg)
    assert {k.split(".", 1)[1] for k in space if k.startswith("model.")} == swept
    params = baseline_params(cfg, space)
    assert all(params[f"model.{k}"] == cfg.model[k] for k in swept)


def test_a_model_of_yours_without_a_space_sweeps_the_optimizer_only(compose_cfg):
    mine = [
        "trusted_modules=[tests.problem_models]",
        "~model",
        "+model._target_=tests.problem_models.wide",
    ]
    cfg = prepare(compose_cfg("data=digits_images", *mine))
    assert set(parse_space(cfg.search.space, cfg)) == {"optimizer.learning_rate"}
    swept = prepare(
        compose_cfg(*mine, "+model.units=8", "+search.space.model.units='choice(4, 8)'")
    )
    assert set(parse_space(swept.search.space, swept)) == {"model.units", "optimizer.learning_rate"}


def test_per_layer_widths_open_with_the_depth_and_trial_0_trains_as_the_tutorial(compose_cfg):
    import optuna

    from sweep.config.space import apply_params, sample
    from sweep.run import build_model, execute
    from sweep.tracking import NullRun
    from sweep.train.data import dataset_for

    cfg = prepare(compose_cfg("model=mlp_layers", "experiment=tiny"))
    assert cfg.search.study_name == "sine-mlp_layers"  # not the tutorial's sine-mlp: another space
    space = parse_space(cfg.search.space, cfg)
    params = baseline_params(cfg, space)
    assert [params[f"model.widths.{i}"] for i in range(4)] == [20] * 4
    assert "model.widths.4" not in params and "model.width" not in space
    trial = optuna.create_study().ask()
    drawn = sample(trial, space)
    widths = [k for k in drawn if k.startswith("model.widths.")]
    assert len(widths) == drawn["model.depth"]  # one width per hidden layer, no more
    model = build_model(apply_params(cfg, drawn), dataset_for(cfg))
    assert [layer.units for layer in model.layers[:-1]] == [drawn[k] for k in widths]
    tutorial = execute(prepare(compose_cfg("experiment=tiny")), NullRun())
    layered = execute(apply_params(cfg, params), NullRun())
    assert layered.history == tutorial.history  # bit for bit: the same 4x20 tanh model
