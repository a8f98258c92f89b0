"""Records logged before today's keys, upgraded so old runs can still be rerun."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from sweep.core.errors import ConfigError
from sweep.core.objects import check_targets

# Records logged before objects were named by `_target_` (optimizer.name/lr, search.*.name):
# old name -> (target, the old builder's keys it passed on). The old `lr` is Keras's learning_rate.
OLD_OPTIMIZERS = {
    "sgd": ("keras.optimizers.SGD", ("lr", "momentum")),
    "adam": ("keras.optimizers.Adam", ("lr",)),
    "rmsprop": ("keras.optimizers.RMSprop", ("lr", "momentum")),
}

OLD_SAMPLERS = {
    "tpe": ("optuna.samplers.TPESampler", ("seed", "n_startup_trials")),
    "random": ("optuna.samplers.RandomSampler", ("seed",)),
    "cmaes": ("optuna.samplers.CmaEsSampler", ("seed",)),
    "qmc": ("optuna.samplers.QMCSampler", ("seed",)),
}

OLD_PRUNERS = {
    "median": ("optuna.pruners.MedianPruner", ("n_startup_trials", "n_warmup_steps")),
    "percentile": (
        "optuna.pruners.PercentilePruner",
        ("percentile", "n_startup_trials", "n_warmup_steps"),
    ),
    "hyperband": ("optuna.pruners.HyperbandPruner", ()),
    "successive_halving": ("optuna.pruners.SuccessiveHalvingPruner", ()),
    "none": ("optuna.pruners.NopPruner", ()),
}


# The tutorial's builder, and what a record without a model target meant.
MLP = "sweep.train.model.build_mlp"
# Where sweep's own builders lived before the packages (records and studies name them so).
MOVED = {"sweep.model.": "sweep.train.model.", "sweep.data.": "sweep.train.data."}


def moved_target(target: object) -> object:
    """A target named by its place before the packages, in today's place (others as they are)."""
    for old, new in MOVED.items():
        if isinstance(target, str) and target.startswith(old):
            return new + target[len(old) :]
    return target


def earlier_name(target: object) -> object:
    """Today's target under the name studies made before the packages hashed it with, so their
    fingerprint still matches and they resume."""
    for old, new in MOVED.items():
        if isinstance(target, str) and target.startswith(new):
            return old + target[len(new) :]
    return target


def upgrade_record(cfg: DictConfig) -> DictConfig:
    """A logged config in today's keys, so runs recorded before `_target_` can still be rerun."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    if "name" in out.optimizer:
        if "lr" not in out.optimizer:
            raise ConfigError("the record's optimizer has a name but no lr")
        out.optimizer = _upgraded(out.optimizer, "optimizer", OLD_OPTIMIZERS)
    for key in ("model", "data"):
        if "_target_" in out[key]:
            out[key]._target_ = moved_target(out[key]._target_)
    if "_target_" not in out.model:
        out.model = {"_target_": MLP, **out.model}
    if "_target_" not in out.data:  # recorded before data sets were named: the tutorial's
        out.data = {
            "_target_": "sweep.train.data.sine",
            "name": "sine",
            "task": "regression",
            **out.data,
        }
    for key, table in (("sampler", OLD_SAMPLERS), ("pruner", OLD_PRUNERS)):
        if OmegaConf.select(out, f"search.{key}.name") is not None:
            out.search[key] = _upgraded(out.search[key], f"search.{key}", table)
    space = OmegaConf.select(out, "search.space.optimizer")
    if space is not None and "lr" in space:
        space.learning_rate = space.pop("lr")
    check_targets(out)  # a record is data too: what it names is held to the same allowlist
    return out


def _upgraded(spec: DictConfig, key: str, table: dict[str, tuple[str, tuple[str, ...]]]) -> dict:
    """An old `name: x` spec as `_target_` plus the kwargs the old builder passed on."""
    if spec.name not in table:
        raise ConfigError(
            f"{key}.name={spec.name!r} in the record is not one of: {', '.join(table)}"
        )
    target, kept = table[spec.name]
    upgraded = {"_target_": target}
    upgraded |= {("learning_rate" if k == "lr" else k): spec[k] for k in kept if k in spec}
    if spec.name in ("hyperband", "successive_halving"):  # what the old builder passed
        upgraded["min_resource"] = max(1, spec.get("n_warmup_steps", 5))
    return upgraded
