"""A past run's record, and training it again: what `rerun` and `robust` share.

Neither command composes conf/: each configuration is the run's logged `config.yaml`, so editing
conf/ after a run cannot change its rerun. Only the tracking section is replaced, so new runs go
to today's store. A record may come from a shared store anyone can write to, so it is data: never
interpolated, held to the command line's checks, and unable to widen `trusted_modules`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from sweep.config import Store, upgrade_record, validate
from sweep.errors import ConfigError, Diverged
from sweep.objects import trusted_prefixes

RECORD_FILES = ("config.yaml", "replay.json")
# What this checkout trusts: a record may name these modules, never more.
LOCAL_CONF = Path(__file__).resolve().parents[2] / "conf" / "config.yaml"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
REQUIRED_KEYS = (
    "seed",
    "data",  # the tutorial's keys before data sets were named by `_target_`; any set's since
    "model",
    "optimizer",  # its keys differ before and after `_target_`; upgrade_record maps them
    "trainer.epochs",
    "trainer.batch_size",
    "trainer.deterministic",
)


@dataclass
class Record:
    """A past run and what it logged to be replayed."""

    run: Any  # mlflow.entities.Run
    cfg: DictConfig
    replay: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def overrides(self) -> list[str]:
        return list(self.replay.get("overrides", []))


def load_record(reader: Any, run_id: str) -> Record:
    """Read a run's config.yaml and replay.json; one line when it cannot be replayed."""
    if not RUN_ID.match(run_id):
        raise ConfigError(f"{run_id!r} is not an MLflow run id (32 hex digits)")
    run = reader.run(run_id)
    missing = [name for name in RECORD_FILES if name not in reader.artifact_names(run)]
    if missing:
        hint = (
            "it is a sweep's parent run; rerun one of its trials"
            if run.data.tags.get("sweep.kind") == "sweep"
            else "only runs logged by `python -m sweep` carry one"
        )
        raise ConfigError(
            f"run {run_id} has no replay record (missing {', '.join(missing)}): {hint}"
        )
    texts = {name: reader.artifact_text(run, name) for name in RECORD_FILES}
    cfg = logged_config(texts["config.yaml"], run_id)
    missing_keys = [k for k in REQUIRED_KEYS if OmegaConf.select(cfg, k) is None]
    if missing_keys:
        raise ConfigError(f"run {run_id}'s config.yaml lacks {', '.join(missing_keys)}")
    return Record(run, cfg, json.loads(texts["replay.json"]))


def logged_config(text: str, run_id: str) -> DictConfig:
    """A config.yaml read from a (shared) store as plain data: never interpolated, trusting no
    module that this checkout's conf/ does not trust already."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError(f"run {run_id}'s config.yaml is not a mapping")
    found = next(interpolations(data), None)
    if found is not None:
        raise ConfigError(
            f"run {run_id}'s config.yaml holds an interpolation at {found}: a logged config is "
            "resolved when it is written, so this record was edited; refused"
        )
    extra = set(trusted_prefixes(data)) - set(trusted_prefixes(OmegaConf.load(LOCAL_CONF)))
    if extra:
        names = ", ".join(sorted(p.rstrip(".") for p in extra))
        raise ConfigError(
            f"run {run_id}'s config.yaml trusts modules this checkout does not ({names}); a "
            f"record cannot extend what is imported: add them to trusted_modules in {LOCAL_CONF}"
        )
    return OmegaConf.create(data)


def interpolations(node: Any, key: str = "") -> Iterator[str]:
    """The dotted key of every string holding `${`, which OmegaConf would resolve."""
    if isinstance(node, dict):
        for name, value in node.items():
            if "${" in str(name):
                yield f"{key}.{name}" if key else str(name)
            yield from interpolations(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from interpolations(value, f"{key}[{i}]")
    elif isinstance(node, str) and "${" in node:
        yield key


def check_data_file(record: Record) -> None:
    """A run trained on a file that changed since cannot be reproduced: say so, compare nothing."""
    from pathlib import Path

    from sweep.data import file_digest

    source = record.replay.get("data", {})
    if "file_sha256" not in source:
        return
    path = Path(source["file"])
    now = file_digest(path) if path.is_file() else None
    if now != source["file_sha256"]:
        state = "is gone" if now is None else f"has changed since (sha256 {now})"
        raise ConfigError(
            f"run {record.run_id} trained on {path} (sha256 {source['file_sha256']}), which "
            f"{state}: a rerun cannot reproduce its numbers"
        )


def rerun_config(cfg: DictConfig, store: Store, seed: int | None = None) -> DictConfig:
    """The record's config with today's store as the tracking target (and optionally a new seed)."""
    out = upgrade_record(cfg)
    OmegaConf.update(out, "tracking.enabled", True, force_add=True)
    OmegaConf.update(out, "tracking.uri", store.uri, force_add=True)
    OmegaConf.update(out, "tracking.artifact_root", store.artifact_root, force_add=True)
    for key, default in (("experiment", "sine"), ("log_model", True), ("log_plots", True)):
        if OmegaConf.select(out, f"tracking.{key}") is None:
            OmegaConf.update(out, f"tracking.{key}", default, force_add=True)
    OmegaConf.update(out, "paths.store", str(store.folder), force_add=True)
    for key, default in (("jit_compile", False), ("threads", None)):
        if OmegaConf.select(out, f"trainer.{key}", default="<absent>") == "<absent>":
            OmegaConf.update(out, f"trainer.{key}", default, force_add=True)
    if seed is not None:
        out.seed = seed
    checked = out.copy()  # held to the command line's checks; the record's own storage path
    checked.search.storage = f"sqlite:///{store.folder}/optuna.db"  # may be another machine's
    validate(checked)
    return out


def train_again(
    cfg: DictConfig,
    name: str,
    overrides: Sequence[str],
    tags: dict[str, Any],
    parent_run_id: str | None = None,
) -> tuple[str, float]:
    """Train cfg as a new run (no pruning); returns its id and objective (NaN if diverged)."""
    from sweep import console
    from sweep.pipeline import execute
    from sweep.search import objectives
    from sweep.tracking import make_tracker, tracked_run

    tracker = make_tracker(cfg.tracking)
    tracker.setup()
    value = math.nan
    hooks = [console.epoch_counter(name, cfg.trainer.epochs)]
    try:
        with tracked_run(tracker, name, parent_run_id, tags) as run:
            result = execute(cfg, run, overrides, hooks)
            value = result.metrics.get(objectives(cfg)[0][0], math.nan)
    except Diverged:
        pass  # the run is closed FAILED with its reason; a NaN compares equal to a NaN
    return run.run_id, value
