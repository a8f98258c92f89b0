"""The worker's trial loop: pruning must actually stop a clearly worse trial."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from optuna.trial import TrialState

from sweep.objects import build
from sweep.training import EpochLog, StopTraining
from sweep.worker import pruning_hook

GOOD = [0.50, 0.30, 0.20, 0.15, 0.12, 0.10]
BAD = [0.90, 0.90, 0.90, 0.90, 0.90, 0.90]
BETTER = [0.40, 0.20, 0.10, 0.08, 0.06, 0.05]


def pruner_from(cfg: DictConfig) -> optuna.pruners.BasePruner:
    """The pruner a sweep builds from its config, as study.py does: change here if that moves."""
    return build(cfg.search.pruner, "search.pruner")


def run_through_hook(study: optuna.Study, losses: Sequence[float]) -> tuple[TrialState, int]:
    """Feed per-epoch val losses to the worker's pruning hook, as train() does; state and epochs."""
    trial = study.ask()
    hook = pruning_hook(trial)
    for epoch, loss in enumerate(losses, start=1):
        try:
            hook(EpochLog(epoch, train_loss=loss, val_loss=loss))
        except StopTraining as stop:
            assert str(stop) == f"pruned at epoch {epoch}"
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED, epoch
    study.tell(trial, losses[-1])
    return TrialState.COMPLETE, len(losses)


@pytest.mark.parametrize(
    ("overrides", "first_prunable_epoch"),
    [(["experiment=tiny"], 1), ([], 5)],  # tiny: 2 startup trials, warmup 1; default: 5 and 5
    ids=["tiny", "default"],
)
def test_a_clearly_worse_trial_is_pruned_and_a_better_one_is_not(
    compose_cfg, overrides, first_prunable_epoch
):
    cfg = compose_cfg(*overrides)
    study = optuna.create_study(direction="minimize", pruner=pruner_from(cfg))
    startup = cfg.search.pruner.n_startup_trials
    for _ in range(startup):
        assert run_through_hook(study, GOOD) == (TrialState.COMPLETE, len(GOOD))
    assert run_through_hook(study, BAD) == (TrialState.PRUNED, first_prunable_epoch)
    assert run_through_hook(study, BETTER) == (TrialState.COMPLETE, len(BETTER))


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
