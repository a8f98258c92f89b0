"""Reading what past runs logged: the run, its artifacts as text, its metric histories.

Used by rerun, robust and the report, which read a store they did not write in this process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sweep.core.errors import ConfigError, first_line
from sweep.core.secrets import mask_url
from sweep.tracking.runs import MlflowClient, MlflowException, Run

Series = dict[int, float]


class Reader:
    """One tracking store, read: runs by id, their artifacts and metrics."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client = MlflowClient(uri)

    def run(self, run_id: str) -> Any:
        """The run, or one line saying it is not a run of this store."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc):
                raise ConfigError(
                    f"run {run_id} is not in the tracking store {mask_url(self.uri)}; "
                    "if it was logged to another store, pass --store DIR or --tracking-uri URI"
                ) from None
            raise ConfigError(f"tracking store {mask_url(self.uri)}: {first_line(exc)}") from exc
        if run.info.lifecycle_stage == "deleted":
            raise ConfigError(f"run {run_id} was deleted from {mask_url(self.uri)}")
        return run

    def find(self, run_id: str | None) -> Any | None:
        """The run if it still exists; None for a missing or deleted one."""
        try:
            return self.run(run_id) if run_id else None
        except ConfigError:
            return None

    def runs_starting(self, prefix: str, limit: int) -> list[Any]:
        """Up to `limit` live runs of any experiment whose id begins with `prefix` (hex digits,
        so safe in the filter): what a short id, as the trial lines print it, may name."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return []
        return list(
            self.client.search_runs(
                experiments,
                filter_string=f"attributes.run_id LIKE '{prefix}%'",
                max_results=limit,
            )
        )

    def artifact_names(self, run: Any) -> set[str]:
        """Top-level artifact paths of a run; one line when its artifacts cannot be read."""
        local = local_artifact_dir(run.info.artifact_uri)
        if local is not None and not local.is_dir():
            raise ConfigError(
                f"run {run.info.run_id} has no replay record here: its artifact folder {local} "
                "does not exist (a run logged on another machine, or one without artifacts)"
            )
        try:
            return {a.path for a in self.client.list_artifacts(run.info.run_id)}
        except Exception as exc:  # any artifact repository's failure: unreachable, denied
            raise ConfigError(
                f"cannot read run {run.info.run_id}'s artifacts at {run.info.artifact_uri}: "
                f"{first_line(exc)}"
            ) from exc

    def artifact_text(self, run: Any, name: str) -> str:
        return self.artifact_bytes(run, name).decode()

    def artifact_bytes(self, run: Any, name: str) -> bytes:
        """One artifact's content (a plot's PNG); one line when it cannot be downloaded."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(run.info.run_id, name, tmp)
            except Exception as exc:
                raise ConfigError(
                    f"cannot download {name} of run {run.info.run_id}: {first_line(exc)}"
                ) from exc
            return Path(path).read_bytes()

    def metric_series(self, run: Any) -> dict[str, Series]:
        """Every metric of a run as step -> value (the last value logged at each step)."""
        return {name: self.metric_history(run.info.run_id, name) for name in run.data.metrics}

    def metric_history(self, run_id: str, name: str) -> Series:
        history = sorted(self.client.get_metric_history(run_id, name), key=lambda m: m.timestamp)
        return {m.step: m.value for m in history}

    def open_run(self, run_id: str) -> Run:
        """A handle to log more to an existing run (a rerun's comparison, robust's tables)."""
        return Run(self.client, run_id)


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """The folder of a run's artifacts when they are on this machine's disk."""
    parts = urlsplit(artifact_uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(artifact_uri) if parts.scheme == "" else None
