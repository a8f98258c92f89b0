"""Warm starts: a new study begins with the finished trials of an earlier one.

Only trials that mean the same thing are copied: the earlier study's fixed config (everything
outside `search`) must match this one, and each copied trial's parameters must be a point the
new space samples (its branches included). Every skipped trial is named with its reason.
"""

from __future__ import annotations

from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from sweep.config.checks import flatten
from sweep.config.space import Space, active, fingerprint, misfit
from sweep.core.errors import ConfigError
from sweep.study.budget import COPIED_ATTR

WARM_ATTR = "warm_start"


def source_study(cfg: DictConfig, storage: Any) -> optuna.Study | None:
    """The study named by search.warm_start_from, checked to match this config; None if unset."""
    name = cfg.search.get("warm_start_from")
    if not name:
        return None
    if name == cfg.search.study_name:
        raise ConfigError("search.warm_start_from names this study itself; name an earlier one")
    try:
        source = optuna.load_study(study_name=name, storage=storage, sampler=None)
    except KeyError:
        raise ConfigError(
            f"search.warm_start_from={name!r}: no such study in this storage"
        ) from None
    diffs = fixed_differences(source.user_attrs.get("fixed_config", {}), fingerprint(cfg)[1])
    if diffs:
        raise ConfigError(
            f"search.warm_start_from={name!r}: its fixed config differs ({'; '.join(diffs[:3])}); "
            "its trials would not mean the same here"
        )
    return source


def fixed_differences(old: dict, new: dict) -> list[str]:
    """`key: old -> new` for every key outside `search` that differs between two configs."""
    a = {k: v for k, v in flatten(old).items() if not k.startswith("search.")}
    b = {k: v for k, v in flatten(new).items() if not k.startswith("search.")}
    return [
        f"{k}: {a.get(k, '<absent>')} -> {b.get(k, '<absent>')}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


def copy_trials(source: optuna.Study, study: optuna.Study, space: Space) -> dict[str, Any]:
    """Add the source's finished trials that fit the space; record and return what was skipped."""
    copied, skipped = [], []
    for trial in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        why = _unfit(trial, source, study) or misfit(space, trial.params)
        if why:
            skipped.append({"trial": trial.number, "reason": why})
            continue
        study.add_trial(_copy(trial, source.study_name, active(space, trial.params)))
        copied.append(trial.number)
    record = {"from": source.study_name, "copied": copied, "skipped": skipped}
    study.set_user_attr(WARM_ATTR, record)
    return record


def _unfit(trial: FrozenTrial, source: optuna.Study, study: optuna.Study) -> str | None:
    """A reason the trial's values cannot stand in this study (objectives differ), or None."""
    if len(trial.values) != len(study.directions) or source.directions != study.directions:
        return "its study optimised other objectives"
    return None


def _copy(trial: FrozenTrial, name: str, dists: dict[str, Any]) -> FrozenTrial:
    """The trial as a new study's trial: same params, values and losses; whence it came."""
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("baseline", "retry_of")}
    return optuna.trial.create_trial(
        params=dict(trial.params),
        distributions=dists,
        values=list(trial.values),
        intermediate_values=dict(trial.intermediate_values),
        user_attrs={**attrs, COPIED_ATTR: f"{name}#{trial.number}"},
    )


def describe(record: dict[str, Any]) -> str:
    """One line for the console: how many were copied, and each skipped trial with its reason."""
    text = f"warm start from {record['from']!r}: copied {len(record['copied'])} trial(s)"
    if record["skipped"]:
        names = "; ".join(f"trial {s['trial']}: {s['reason']}" for s in record["skipped"])
        text += f", skipped {len(record['skipped'])} ({names})"
    return text
