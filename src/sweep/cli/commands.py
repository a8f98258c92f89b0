"""The Hydra commands: each hands a checked config to the Python API (`sweep.api`).

`sweep.cli.runner` composes the config, checks it (before TensorFlow or MLflow is imported), calls
one of these with `(cfg, overrides)` and turns what they raise into one line and an exit code.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from sweep import api
from sweep.core.errors import EXIT_OK


def baseline(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """One run of the configured model (the tutorial's, by default), logged as its own run."""
    api.baseline(*overrides, cfg=cfg)
    return EXIT_OK


def sweep(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """Create or resume the study and run `search.jobs` workers on it; this machine owns it."""
    api.sweep(*overrides, cfg=cfg)
    return EXIT_OK


def worker(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """One worker that joins (or starts) a shared study and runs trials until it is done."""
    api.sweep(*overrides, cfg=cfg, jobs=1, owner=False)
    return EXIT_OK


def launch(
    cfg: DictConfig,
    overrides: Sequence[str],
    engine: str,
    address: str,
    workers: int,
    cpus: float,
    retries: int,
) -> int:
    """Workers as tasks of an engine's cluster (Ray), each the `worker` command's loop."""
    from sweep.launch import launch as launch_workers

    return launch_workers(cfg, overrides, address, workers, cpus, retries)
