"""Shared fixtures: real configs composed from conf/, every output under tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri() -> Iterator[None]:
    """mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; keep it within one test."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """compose(overrides) -> the real config, with every store under tmp_path."""
    GlobalHydra.instance().clear()

    def _compose(*overrides: str, store: Path | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(
                config_name="config", overrides=[f"paths.store={store or tmp_path}", *overrides]
            )

    yield _compose
    GlobalHydra.instance().clear()


def clean_env() -> dict[str, str]:
    """The environment a user's shell would have, minus anything pointing at another store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a hung child dumps its threads' stacks on SIGABRT
    return env


def sweep_cmd(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    """`python -m sweep <args>` as a user would run it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli(
    *args: str, store: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python -m sweep <args> paths.store=<store>`: a Hydra command on a store of the test's."""
    return sweep_cmd(*args, f"paths.store={store}", env=env, timeout=timeout)


# One tiny sweep: 5 finished trials with the tiny experiment's median pruner, so the study holds
# complete, pruned and diverged (failed) trials; deterministic, so every store it makes is alike.
TINY_SWEEP = ("sweep", "experiment=tiny", "search.n_trials=5")


@pytest.fixture(scope="session")
def tiny_sweep_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny real sweep shared by the UI, report, registry, worker and replay tests.

    Tests may add reruns to it, never change what is there (robust writes to its own sweep).
    """
    store = tmp_path_factory.mktemp("tiny-sweep")
    out = run_cli(*TINY_SWEEP, store=store)
    assert out.returncode == 0, out.stdout + out.stderr
    return store
