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

from sweep import CONF_DIR
from sweep.config.checks import MAX_POINTS, validate
from sweep.config.records import MLP, upgrade_record
from sweep.config.stores import Store
from sweep.core.errors import ConfigError, Diverged
from sweep.core.objects import trusted_prefixes

RECORD_FILES = ("config.yaml", "replay.json")
# What this checkout trusts: a record may name these modules, never more.
LOCAL_CONF = Path(CONF_DIR) / "config.yaml"
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

# What a record may ask of the machine that reruns it: anyone can write one to a shared server,
# so these bound the memory and time it claims before anything is built. conf/ and the command
# line are the user's own and are not held to them.
MAX_RECORD_CHARS = 1_000_000  # per file; a logged config.yaml is ~3 KB, a replay.json ~2 KB
MAX_RECORD_NODES = 10_000  # keys and values: a config has ~150; a YAML alias bomb has 10**9
MAX_RECORD_DEPTH = 32  # nesting: a config is 5 deep; PyYAML and OmegaConf recurse on it
# libyaml refuses `[[[...` beyond 1,000 levels at once; pure PyYAML spends ~5 s reaching its
# recursion limit first. Both build plain data only (safe_load's constructor).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
LIMITS = {
    # 1,000 plain Dense layers do not train (no residuals); Keras builds each one in Python.
    "model.depth": 1_000,
    # One layer of a million units; depth x width**2 is bounded by MAX_PARAMS below.
    "model.width": 1_000_000,
    # Each epoch logs its metrics to the (shared) store and keeps a history row; the tutorial: 50.
    "trainer.epochs": 100_000,
    # No training set is larger (config.MAX_POINTS); validate also keeps it within the data's.
    "trainer.batch_size": MAX_POINTS,
    # More than any machine's cores; each is an OS thread of TensorFlow's pools.
    "trainer.threads": 1_024,
    # Each trial trains a model and TPE's sampling slows with every trial; the default is 30.
    "search.n_trials": 100_000,
    # Worker processes on one machine, each importing TensorFlow (~400 MB).
    "search.jobs": 1_024,
    "data.n_val": MAX_POINTS,
    "data.n_test": MAX_POINTS,
}
# An MLP's weights: 400 MB as float32, ~1.6 GB with its gradients and Adam's two slots.
MAX_PARAMS = 100_000_000
# The record's search space: validate builds a config per choice and parses every expression
# (Hydra's parser takes ~1 s per 10,000 choices); conf/'s spaces sweep 4-6 keys, 10 corners.
MAX_SPACE_KEYS = 100
MAX_EXPRESSION = 10_000  # characters of one expression
MAX_CHOICES = 1_000  # values listed by all its choice(...)s together


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
    for name, text in texts.items():
        if len(text) > MAX_RECORD_CHARS:
            raise ConfigError(
                f"run {run_id}'s {name} holds {len(text):,} characters; a record holds at most "
                f"{MAX_RECORD_CHARS:,}: refused"
            )
    cfg = logged_config(texts["config.yaml"], run_id)
    missing_keys = [k for k in REQUIRED_KEYS if OmegaConf.select(cfg, k) is None]
    if missing_keys:
        raise ConfigError(f"run {run_id}'s config.yaml lacks {', '.join(missing_keys)}")
    return Record(run, cfg, logged_replay(texts["replay.json"], run_id))


def logged_replay(text: str, run_id: str) -> dict[str, Any]:
    """replay.json as a mapping of bounded shape, or one line."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # json recurses too
        raise ConfigError(f"run {run_id}'s replay.json is not JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"run {run_id}'s replay.json is not a mapping")
    check_shape(data, f"run {run_id}'s replay.json")
    return data


def logged_config(text: str, run_id: str) -> DictConfig:
    """A config.yaml read from a (shared) store as plain data: never interpolated, trusting no
    module that this checkout's conf/ does not trust already."""
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"run {run_id}'s config.yaml is not YAML: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"run {run_id}'s config.yaml is not a mapping")
    check_shape(data, f"run {run_id}'s config.yaml")
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


def check_shape(data: Any, what: str) -> None:
    """Refuse a record of more than MAX_RECORD_NODES nodes or MAX_RECORD_DEPTH levels, walked
    without recursion and stopped at the cap: YAML aliases make 20 lines into 10**9 nodes."""
    stack, count = [(data, 0)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_RECORD_NODES or depth > MAX_RECORD_DEPTH:
            raise ConfigError(
                f"{what} is larger than a record may be (more than {MAX_RECORD_NODES:,} values "
                f"or {MAX_RECORD_DEPTH} levels deep): refused"
            )
        if isinstance(node, dict):
            stack += [(child, depth + 1) for pair in node.items() for child in pair]
        elif isinstance(node, list):
            stack += [(child, depth + 1) for child in node]


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

    from sweep.train.data import file_digest

    source = record.replay.get("data", {})
    for seen in source.get("files", {}).values():  # data=npy: each file's size and ends
        check_fingerprint(record.run_id, seen)
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


def check_fingerprint(run_id: str, seen: dict[str, Any]) -> None:
    """One memory-mapped file of the run's against its fingerprint now (see `file_fingerprint`)."""
    from pathlib import Path

    from sweep.train.data import file_fingerprint

    path = Path(seen["file"])
    now = file_fingerprint(path) if path.is_file() else None
    if now != seen:
        state = "is gone" if now is None else "has changed since (its size or ends differ)"
        raise ConfigError(
            f"run {run_id} trained on {path}, which {state}: a rerun cannot reproduce its numbers"
        )


def check_bounds(cfg: DictConfig) -> None:
    """Refuse a record asking for more than LIMITS or MAX_PARAMS, in its own values or at the
    largest corner of its search space (also the record's data). Before validate: it builds."""
    within_limits(cfg, "the record asks for")
    corner = largest_corner(cfg)
    if corner is not None:
        within_limits(corner, "the record's search.space can sample")


def within_limits(cfg: DictConfig, said: str) -> None:
    """One line naming the first key above its cap; values that are not numbers are validate's."""
    for key, cap in LIMITS.items():
        value = OmegaConf.select(cfg, key)
        if _number(value) and value > cap:
            raise ConfigError(f"{said} {key}={value!r}; a record may ask for at most {cap:,}")
    params = mlp_params(cfg)
    if params > MAX_PARAMS:
        raise ConfigError(
            f"{said} a {cfg.model.depth}x{cfg.model.width} MLP, {params:,.0f} parameters; a "
            f"record may ask for at most {MAX_PARAMS:,}"
        )


def mlp_params(cfg: DictConfig) -> float:
    """Weights and biases of the MLP cfg names, counting the data's inputs and outputs as one
    each (those come from this machine's data, not from the record); 0 for another model."""
    depth, width = OmegaConf.select(cfg, "model.depth"), OmegaConf.select(cfg, "model.width")
    if OmegaConf.select(cfg, "model._target_") != MLP or not (_number(depth) and _number(width)):
        return 0
    if depth < 1:
        return 0
    return 2 * width + (depth - 1) * (width * width + width) + width + 1


def largest_corner(cfg: DictConfig) -> DictConfig | None:
    """cfg with every swept number at the largest value its space can sample (depth and width
    together: the parameter count's worst case); None without a space. Sizes checked first."""
    space = OmegaConf.select(cfg, "search.space")
    if not space:
        return None
    from sweep.config.space import parse_space
    from sweep.core.keys import leaves

    exprs = leaves(space)
    if len(exprs) > MAX_SPACE_KEYS:
        raise ConfigError(
            f"the record's search.space sweeps {len(exprs):,} keys; at most {MAX_SPACE_KEYS}"
        )
    long = next((k for k, e in exprs.items() if len(str(e)) > MAX_EXPRESSION), None)
    if long is not None:
        raise ConfigError(
            f"the record's search.space.{long} is longer than {MAX_EXPRESSION:,} characters"
        )
    dists = parse_space(space, cfg).flat()
    choices = sum(len(getattr(d, "choices", ())) for d in dists.values())
    if choices > MAX_CHOICES:
        raise ConfigError(
            f"the record's search.space lists {choices:,} choices; at most {MAX_CHOICES:,}"
        )
    corner = OmegaConf.create(OmegaConf.to_container(cfg))
    for key, dist in dists.items():
        values = dist.choices if hasattr(dist, "choices") else (dist.low, dist.high)
        values = [v for v in values if _number(v)]
        if values and not isinstance(OmegaConf.select(cfg, key), DictConfig):
            OmegaConf.update(corner, key, max(values), force_add=True)
    return corner


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def rerun_config(cfg: DictConfig, store: Store, seed: int | None = None) -> DictConfig:
    """The record's config with today's store as the tracking target (and optionally a new seed)."""
    out = upgrade_record(cfg)
    check_bounds(out)
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
    from sweep.config.space import objectives
    from sweep.core import console
    from sweep.run import execute
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
