"""The worker's trial loop: pruning must actually stop a clearly worse trial."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from optuna.study import StudyDirection
from optuna.trial import TrialState

from sweep.core.errors import ConfigError
from sweep.core.objects import build
from sweep.study.pruning import Pruning, check_direction
from sweep.train.loop import EpochLog, StopTraining

GOOD = [0.50, 0.30, 0.20, 0.15, 0.12, 0.10]
BAD = [0.90, 0.90, 0.90, 0.90, 0.90, 0.90]
BETTER = [0.40, 0.20, 0.10, 0.08, 0.06, 0.05]


def pruner_from(cfg: DictConfig) -> optuna.pruners.BasePruner:
    """The pruner a sweep builds from its config, as study.py does: change here if that moves."""
    return build(cfg.search.pruner, "search.pruner")


def run_through_hook(study: optuna.Study, losses: Sequence[float]) -> tuple[TrialState, int]:
    """Feed per-epoch val losses to the worker's pruning hook, as train() does; state and epochs."""
    trial = study.ask()
    hook = Pruning(study, trial)
    for epoch, loss in enumerate(losses, start=1):
        try:
            hook(EpochLog(epoch, train_loss=loss, val_loss=loss))
        except StopTraining as stop:
            assert str(stop) == f"pruned at epoch {epoch}"
            hook.flush()
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED, epoch
    hook.flush()
    # the objective: the loss itself, or an accuracy that rises as the loss falls
    study.tell(trial, losses[-1] if study.direction.name == "MINIMIZE" else 1 - losses[-1])
    return TrialState.COMPLETE, len(losses)


@pytest.mark.parametrize("direction", ["minimize", "maximize"])  # val_mse; val_accuracy
@pytest.mark.parametrize(
    ("overrides", "first_prunable_epoch"),
    [(["experiment=tiny"], 1), ([], 5)],  # tiny: 2 startup trials, warmup 1; default: 5 and 5
    ids=["tiny", "default"],
)
def test_a_clearly_worse_trial_is_pruned_and_a_better_one_is_not(
    compose_cfg, overrides, first_prunable_epoch, direction
):
    """Whatever the objective's direction, the pruner ranks validation losses lowest-first."""
    cfg = compose_cfg(*overrides)
    study = optuna.create_study(direction=direction, pruner=pruner_from(cfg))
    startup = cfg.search.pruner.n_startup_trials
    for _ in range(startup):
        assert run_through_hook(study, GOOD) == (TrialState.COMPLETE, len(GOOD))
    assert run_through_hook(study, BAD) == (TrialState.PRUNED, first_prunable_epoch)
    assert run_through_hook(study, BETTER) == (TrialState.COMPLETE, len(BETTER))


@pytest.mark.parametrize("pruner", ["hyperband", "successive_halving"])
def test_a_pruner_that_ranks_losses_in_the_studys_direction_is_refused_when_it_maximizes(
    compose_cfg, pruner
):
    built = pruner_from(compose_cfg(f"search/pruner={pruner}"))
    with pytest.raises(ConfigError, match="this study maximizes; use search/pruner=median"):
        check_direction(built, [StudyDirection.MAXIMIZE])
    check_direction(built, [StudyDirection.MINIMIZE])  # losses and objective agree
    check_direction(pruner_from(compose_cfg()), [StudyDirection.MAXIMIZE])  # median: lowest-first


def test_no_trial_is_pruned_before_the_startup_trials_are_done(compose_cfg):
    cfg = compose_cfg("experiment=tiny")
    study = optuna.create_study(direction="minimize", pruner=pruner_from(cfg))
    assert run_through_hook(study, GOOD)[0] == TrialState.COMPLETE
    assert run_through_hook(study, BAD)[0] == TrialState.COMPLETE  # one startup trial so far


def test_pruner_none_never_prunes(compose_cfg):
    cfg = compose_cfg("experiment=tiny", "search/pruner=none")
    study = optuna.create_study(direction="minimize", pruner=pruner_from(cfg))
    for losses in (GOOD, GOOD, BAD, BAD):
        assert run_through_hook(study, losses)[0] == TrialState.COMPLETE


@pytest.mark.slow
def test_the_shared_sweep_prunes_through_the_real_worker(tiny_sweep_store: Path):
    study = optuna.load_study(
        study_name="sine-mlp", storage=f"sqlite:///{tiny_sweep_store}/optuna.db"
    )
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [t.state.name for t in study.trials]  # deterministic: trials 4 and 7 today
    client = MlflowClient(f"sqlite:///{tiny_sweep_store}/mlflow.db")
    for trial in pruned:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        epochs = int(run.data.params["trainer.epochs"])
        assert run.info.status == "KILLED" and run.data.tags["sweep.state"] == "PRUNED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps == sorted(trial.intermediate_values) == list(range(1, len(steps) + 1))
        assert len(steps) < epochs


def optunas_own_calls(study: optuna.Study, losses: Sequence[float]) -> tuple[TrialState, int]:
    """The same trial through Optuna's per-epoch `report` + `should_prune`: the reference."""
    trial = study.ask()
    for epoch, loss in enumerate(losses, start=1):
        trial.report(loss, epoch)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED, epoch
    study.tell(trial, losses[-1])
    return TrialState.COMPLETE, len(losses)


@pytest.mark.parametrize(
    "make_pruner",
    [
        lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        lambda: optuna.pruners.PercentilePruner(40.0, n_startup_trials=2),
        lambda: optuna.pruners.ThresholdPruner(upper=0.6),
        lambda: optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(2, 1), patience=1),
        lambda: optuna.pruners.WilcoxonPruner(p_threshold=0.2, n_startup_steps=2),
        lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
    ],
    ids=["median", "percentile", "threshold", "patient", "wilcoxon", "halving"],
)
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_pruning_decides_and_stores_as_optunas_own_per_epoch_calls(tmp_path, make_pruner):
    """The fast path (a snapshot, values written in one transaction) changes nothing Optuna sees:
    same states, same pruning epochs, same stored intermediate values, on a real SQLite study."""
    rng = np.random.default_rng(7)
    curves = [list(np.cumprod(rng.uniform(0.55, 1.05, size=8))) for _ in range(12)]

    def study(name: str) -> optuna.Study:
        storage = f"sqlite:///{tmp_path}/{name}.db"
        return optuna.create_study(storage=storage, pruner=make_pruner())

    ours, theirs = study("ours"), study("theirs")
    for curve in curves:
        assert run_through_hook(ours, curve) == optunas_own_calls(theirs, curve)
    for a, b in zip(ours.trials, theirs.trials, strict=True):
        assert (a.state, a.intermediate_values, a.value) == (
            b.state, b.intermediate_values, b.value
        )  # fmt: skip
    assert any(t.state == TrialState.PRUNED for t in ours.trials), "no trial was pruned"


def test_a_pruner_that_writes_as_it_decides_keeps_optunas_per_epoch_calls(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.HyperbandPruner())
    assert not Pruning(study, study.ask()).fast
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner())
    assert Pruning(study, study.ask()).fast
