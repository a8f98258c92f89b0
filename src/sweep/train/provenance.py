"""What a run needs to be replayed: code version, library versions, platform. No MLflow here."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from sweep import CONF_DIR

PACKAGES = (
    "tensorflow",
    "keras",
    "numpy",
    "optuna",
    "mlflow",
    "hydra-core",
    "omegaconf",
    "matplotlib",
)
REPO = Path(CONF_DIR).parent  # the checkout whose git commit a run records


def versions() -> dict[str, str]:
    """Python and key library versions, as installed."""
    return dict(_versions())


@functools.cache  # what this process imported; ~0.1 s of metadata scans per trial otherwise
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def git_state() -> dict[str, str]:
    """Commit of this checkout and whether tracked files differ from it."""
    return dict(_git_state())


@functools.cache  # once per process: two git subprocesses per trial cost ~0.1-0.5 s
def _git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": "unknown"}
    return {"commit": commit, "dirty": str(dirty).lower()}


def platform_info() -> dict[str, str]:
    """Machine facts that change floating-point results."""
    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "executable": sys.executable,
    }
