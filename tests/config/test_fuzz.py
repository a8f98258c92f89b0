"""Hostile input, found by a fuzzer: any value for any config key, any sweep expression.

Each command line goes through the one runner in-process (`runner.main(["report", ...])`): the
config is composed and checked as for `make sweep`, and a config that passes reaches the report's
"no study" refusal, which stops before anything is trained or written. Every outcome must be
exit 2 with one `error:` line, never a traceback, never a file; a config that passes must also
hold values of the types the later stages use (CONTRACT), or it would fail mid-sweep instead.
The cases the fuzzer found are kept below as regular tests.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from sweep.cli.runner import main

# Every leaf of the composed default config (hydra's own node aside).
KEYS = [
    "trusted_modules",
    "seed",
    "paths.store",
    "data._target_",
    "data.name",
    "data.task",
    "data.x_min",
    "data.x_max",
    "data.step",
    "data.n_val",
    "data.n_test",
    "data.seed",
    "model._target_",
    "model.depth",
    "model.width",
    "model.activation",
    "optimizer._target_",
    "optimizer.learning_rate",
    "optimizer.momentum",
    "trainer.epochs",
    "trainer.batch_size",
    "trainer.loss",
    "trainer.deterministic",
    "trainer.jit_compile",
    "trainer.threads",
    "tracking.enabled",
    "tracking.uri",
    "tracking.artifact_root",
    "tracking.experiment",
    "tracking.log_model",
    "tracking.log_plots",
    "tracking.registered_model",
    "search.study_name",
    "search.storage",
    "search.objectives",
    "search.n_trials",
    "search.jobs",
    "search.space.model.depth",
    "search.space.model.width",
    "search.space.model.activation",
    "search.space.optimizer.learning_rate",
    "search.enqueue_baseline",
    "search.heartbeat_interval",
    "search.grace_period",
    "search.max_failed_trials",
    "search.sampler._target_",
    "search.sampler.seed",
    "search.sampler.n_startup_trials",
    "search.pruner._target_",
    "search.pruner.n_startup_trials",
    "search.pruner.n_warmup_steps",
]
SPACE_KEYS = [k for k in KEYS if k.startswith("search.space.")]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _name(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _seed(v: Any) -> bool:
    return _is_int(v) and 0 <= v < 2**32


def _positive(v: Any) -> bool:
    return _is_int(v) and v >= 1


# What a passing config must hold where the checks before training are the only guard: the value
# is used only later (by TensorFlow, the study loop, MLflow), where a bad one fails mid-sweep.
CONTRACT: dict[str, Callable[[Any], bool]] = {
    "seed": _seed,
    "data.seed": _seed,
    "data.name": _name,
    "trainer.deterministic": _is_bool,
    "trainer.jit_compile": _is_bool,
    "trainer.threads": lambda v: v is None or _positive(v),
    "tracking.enabled": _is_bool,
    "tracking.log_model": _is_bool,
    "tracking.log_plots": _is_bool,
    "tracking.experiment": _name,
    "search.study_name": _name,
    "search.enqueue_baseline": _is_bool,
    "search.heartbeat_interval": _positive,
    "search.grace_period": _positive,
    "search.max_failed_trials": lambda v: _is_int(v) and v >= 0,
}

# Ints and floats at the edges, never a size in between: a plausible huge size (1e9 points)
# would make the data check allocate gigabytes on a shared machine.
NUMBERS = st.sampled_from(
    [0, 1, -1, 2, 3, 7, 10**18, 2**63, -(2**63), 0.0, -0.0, 0.5, 1.0, -2.5, 1e-300, 5e-324]
    + [1e308, -1e308, math.inf, -math.inf, math.nan, 1e18]
)
TEXT = st.one_of(
    st.sampled_from(["", " ", "null", "tanh", "sine", "mse", "0", "1e3", "${oops}", "日本語"]),
    st.text(max_size=12),
)
SCALARS = st.one_of(NUMBERS, TEXT, st.booleans(), st.none())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "_target_", "x"]), inner, max_size=2),
    ),
    max_leaves=5,
)
BOUND = st.one_of(NUMBERS, st.sampled_from(["a", "x y", ""])).map(lambda v: _render(v))
SWEEPS = st.one_of(
    st.lists(BOUND, max_size=3).map(lambda xs: f"choice({', '.join(xs)})"),
    st.tuples(BOUND, BOUND).map(lambda ab: "interval({}, {})".format(*ab)),
    st.tuples(BOUND, BOUND).map(lambda ab: "int(interval({}, {}))".format(*ab)),
    st.tuples(BOUND, BOUND).map(lambda ab: "tag(log, interval({}, {}))".format(*ab)),
    st.tuples(BOUND, BOUND, BOUND).map(lambda abc: "range({}, {}, {})".format(*abc)),
    TEXT,
)


def _render(value: Any) -> str:
    """A Python value in Hydra's override grammar (strings quoted, so any text gets through)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(map(_render, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_render(v)}" for k, v in value.items()) + "}"
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextlib.contextmanager
def _in_empty_folder() -> Iterator[Path]:
    """cwd in a fresh folder, so relative stores land there and any write shows."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(before)


def run(overrides: list[str]) -> tuple[int, str, list[str]]:
    """`python -m sweep report <overrides>` in-process: exit code, stderr, files it made."""
    err = io.StringIO()
    with _in_empty_folder() as folder, contextlib.redirect_stderr(err):
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["report", "paths.store=store", *overrides])
        made = [str(p.relative_to(folder)) for p in folder.rglob("*")]
    return code, err.getvalue(), made


def check_refused_or_sound(overrides: list[str]) -> None:
    """The property: exit 2, one `error:` line, nothing written; if accepted, CONTRACT holds."""
    code, err, made = run(overrides)
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert made == [], made
    if "no study" in err or "needs tracking=mlflow" in err:  # every check passed
        for key, value in _accepted(overrides).items():
            assert CONTRACT.get(key, lambda _: True)(value), f"{key}={value!r} was accepted"


def _accepted(overrides: list[str]) -> dict[str, Any]:
    """The values the fuzzed keys hold after composition (the runner composed the same)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tests.conftest import CONF

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["paths.store=/tmp/x", *overrides])
    GlobalHydra.instance().clear()
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    return {k: OmegaConf.select(cfg, k, default=None) for k in keys if k in CONTRACT}


FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
    derandomize=True,
)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3))
def test_any_value_for_any_key_is_refused_in_one_line_or_sound(pairs):
    check_refused_or_sound([f"{k}={_render(v)}" for k, v in pairs])


@settings(FUZZ, max_examples=60)
@given(st.lists(st.tuples(st.sampled_from(SPACE_KEYS), SWEEPS), min_size=1, max_size=2))
def test_any_sweep_expression_is_refused_in_one_line_or_sound(pairs):
    check_refused_or_sound([f"{k}={_render(v)}" for k, v in pairs])


# What the fuzzer found (each a traceback, a hang, or a value accepted that fails mid-sweep),
# with the one line each now gets.
FOUND = [
    (["paths.store='${oops}'"], "cannot resolve paths.store: Interpolation key 'oops'"),
    (["search.space.model.depth='range(5e-324, -1, 5e-324)'"], "yields 0 values"),
    (["search.space.model.depth='range(1, 1e18, 0.5)'"], "yields 2000000000000000000 values"),
    (["search.space.model.depth='range(1, inf, 1)'"], "yields 0 values"),
    (["search.space.model.depth='interval(nan, 3)'"], "interval bounds must be finite"),
    (["search.space.model.depth='range(1, 4, 0.5)'"], "can sample 1.0: model.depth must be"),
    (["search.space.model.activation='choice(tanh, x)'"], "can sample 'x'"),
    (["search.space.optimizer.learning_rate='interval(0, 0.1)'"], "can sample 0.0"),
    (["tracking.experiment=null"], "tracking.experiment must be a non-empty name"),
    (["search.study_name=' '"], "search.study_name must be a non-empty name"),
    (["seed=-1"], "seed must be an integer from 0 to 2**32-1"),
    (["data.seed=1e18"], "data.seed must be an integer"),
    (["trainer.deterministic='yes'"], "trainer.deterministic must be true or false"),
    (["trainer.threads=0"], "trainer.threads must be a positive integer"),
    (["search.heartbeat_interval=nan"], "search.heartbeat_interval must be a positive integer"),
    (["search.grace_period=0"], "search.grace_period must be a positive integer"),
    (["search.max_failed_trials=-1"], "search.max_failed_trials must be 0 (no limit) or more"),
]


@pytest.mark.parametrize(("overrides", "message"), FOUND, ids=[f[0][0] for f in FOUND])
def test_found_cases_are_refused_in_one_line(overrides, message):
    code, err, made = run(overrides)
    assert (code, made) == (2, []), err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
