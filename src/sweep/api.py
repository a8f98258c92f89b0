"""The Python API, for notebooks and scripts; `python -m sweep` and the Makefile call the same.

    from sweep import api

    result = api.sweep("experiment=tiny", "search.n_trials=5")
    table = api.trials(result.study)           # one row per trial, pandas
    champion = api.load_champion("experiment=tiny")
    champion.predict([0.5, 1.0])

Every function composes `conf/` with Hydra's compose API and the given overrides (the same
strings as on the command line), runs the checks of `sweep.config.checks.prepare`, and raises
`ConfigError` (bad input, nothing written) or `SweepError` (failed work) as the commands do.
They print what the commands print: a notebook shows one line per trial.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from sweep.core import console, interrupt
from sweep.core.errors import ConfigError, DiskFull, SweepError, hydra_message

if TYPE_CHECKING:
    import numpy as np
    import optuna
    import pandas as pd

    from sweep.train.loop import TrainResult


def compose(*overrides: str) -> DictConfig:
    """The checked config `python -m sweep` would run with these overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sweep import CONF_DIR
    from sweep.config.checks import prepare

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            raw = hydra_compose(config_name="config", overrides=list(overrides))
    except Exception as exc:  # Hydra's composition errors: a bad override or group option
        raise ConfigError(hydra_message(exc)) from exc
    return prepare(raw)


@dataclass(frozen=True)
class BaselineResult:
    """One run of the configured model: its MLflow run id (None with tracking=none) and result."""

    run_id: str | None
    result: TrainResult


@dataclass(frozen=True)
class SweepResult:
    """A study after its workers stopped: the Optuna study, its parent run and summary."""

    study: optuna.Study
    parent_run_id: str | None
    summary: dict[str, Any]

    def trials(self) -> pd.DataFrame:
        return trials(self.study)


@dataclass(frozen=True)
class Champion:
    """The registered best model of a study (`models:/<name>@champion`)."""

    model: Any
    name: str
    version: str
    tags: dict[str, str]

    def predict(self, xs: Sequence[float] | np.ndarray) -> np.ndarray:
        from sweep.study.registry import predict

        return predict(self.model, xs)


def baseline(*overrides: str, cfg: DictConfig | None = None) -> BaselineResult:
    """One run of the configured model (the tutorial's by default), logged as its own run.

    `cfg` is for a caller that composed and checked it already (the runner); `overrides` are
    then only recorded with the run.
    """
    from sweep.run import execute
    from sweep.tracking import make_tracker, tracked_run

    cfg = compose(*overrides) if cfg is None else cfg
    tracker = make_tracker(cfg.tracking)
    tracker.setup()
    hooks = [console.epoch_counter("baseline", cfg.trainer.epochs), interrupt.check]
    with tracked_run(tracker, "baseline", tags={"sweep.kind": "single"}) as run:
        result = execute(cfg, run, list(overrides), hooks)
    console.say(console.result_line(result, cfg.data._target_ == "sweep.train.data.sine"))
    if run.run_id:
        console.say(f"run {run.run_id}  (rerun: make rerun RUN_ID={run.run_id})")
    return BaselineResult(run.run_id, result)


def sweep(
    *overrides: str, cfg: DictConfig | None = None, jobs: int | None = None, owner: bool = True
) -> SweepResult | None:
    """Create or resume the study and run `jobs` workers on it (default `search.jobs`).

    A study stopped early (Ctrl-C, too many failures) says where it stands and raises; its
    owner also closes the parent run, while a joining worker (`owner=False`) leaves it open.
    A joining worker finding the study already done says so and returns None at once.
    """
    from sweep.study.progress import is_live, open_view
    from sweep.study.study import announce, open_sweep
    from sweep.study.summary import stopped, summarize, summary_text
    from sweep.study.worker import Helpers, run_workers, target_met

    cfg = compose(*overrides) if cfg is None else cfg
    if not owner and (why := target_met(cfg)):
        console.say(why)
        return None
    # More workers than trials would only pay start-up: never slower than one worker.
    jobs = min(cfg.search.jobs if jobs is None else jobs, cfg.search.n_trials)
    with Helpers(cfg, overrides, jobs, is_live()) as helpers:
        opened = open_sweep(cfg, overrides)
        console.say(announce(opened))
        try:
            with contextlib.closing(open_view(opened)) as view:
                run_workers(opened, helpers, view)
        except (KeyboardInterrupt, SweepError) as exc:
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped"
            full = isinstance(exc, DiskFull)  # no summary files then: they would not fit either
            console.say(stopped(opened, why, close_parent=owner, record=not full))
            raise
    from sweep.replay.robust import robust_champion
    from sweep.study.summary import conclude

    summary = summarize(opened)
    summary = conclude(opened, summary, champion=robust_champion(opened, summary))
    console.say(summary_text(summary))
    return SweepResult(opened.study, opened.parent_run_id, summary)


def load_study(*overrides: str) -> optuna.Study:
    """The study named by `search.study_name` in `search.storage`; it must exist."""
    from sweep.study.study import load_existing

    cfg = compose(*overrides)
    return load_existing(cfg.search.storage, cfg.search.study_name)


def trials(study: optuna.Study) -> pd.DataFrame:
    """One row per trial, indexed by its number: state, objective value(s), params, run id."""
    import pandas as pd

    from sweep.study.study import RUN_ATTR

    names = study.metric_names or ["value"]
    rows = []
    for t in study.get_trials(deepcopy=False):
        values = t.values or [None] * len(names)
        ended = t.datetime_complete
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                **dict(zip(names, values, strict=True)),
                **{f"params.{k}": v for k, v in t.params.items()},
                "run_id": t.user_attrs.get(RUN_ATTR),
                "seconds": (ended - t.datetime_start).total_seconds() if ended else None,
                "fail_reason": t.user_attrs.get("fail_reason"),
            }
        )
    return pd.DataFrame(rows).set_index("number") if rows else pd.DataFrame()


def load_champion(*overrides: str, alias: str = "champion") -> Champion:
    """The model registered as `tracking.registered_model` (the study's name) under `alias`."""
    from sweep.config.stores import existing_store
    from sweep.tracking import MlflowException, load_alias

    cfg = compose(*overrides)
    name = cfg.tracking.get("registered_model") if cfg.tracking.enabled else None
    if not name:
        raise ConfigError("load_champion needs tracking=mlflow and tracking.registered_model")
    store = existing_store(cfg.paths.store, cfg.tracking.uri)  # a missing store is not created
    try:
        model, version = load_alias(store.uri, name, alias)
    except MlflowException as exc:
        raise ConfigError(f"models:/{name}@{alias}: {str(exc).splitlines()[0]}") from exc
    return Champion(model, name, str(version.version), dict(version.tags))


def register_run(run_id: str, alias: str, *overrides: str) -> str:
    """Register any trial's model (not only the champion or the Pareto front) under
    `tracking.registered_model` with `alias`; returns the version. A trial keeps its weights as a
    `.keras` file; the full MLflow model is logged from it here, as for the champion."""
    from sweep.config.stores import existing_store
    from sweep.tracking import MlflowException, register

    cfg = compose(*overrides)
    name = cfg.tracking.get("registered_model") if cfg.tracking.enabled else None
    if not name:
        raise ConfigError("register_run needs tracking=mlflow and tracking.registered_model")
    store = existing_store(cfg.paths.store, cfg.tracking.uri)
    tags = {"run_id": run_id, "chosen_by": "register_run"}
    try:
        version = register(store.uri, name, alias, run_id, tags, "A model registered by hand.")
    except MlflowException as exc:
        raise ConfigError(f"run {run_id}: {str(exc).splitlines()[0]}") from exc
    return str(version.version)
