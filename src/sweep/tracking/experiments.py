"""Experiment-level reads and tags for `sweep ui`, in plain Python types instead of MLflow's."""

from __future__ import annotations

from dataclasses import dataclass

from sweep.tracking.runs import MlflowClient  # runs.py sets MLflow's environment first


@dataclass(frozen=True)
class Experiment:
    """What the UI's address lines need of an experiment."""

    id: str
    name: str


class Experiments:
    """One store's experiments: which hold runs, their runs' params, their tags."""

    def __init__(self, uri: str) -> None:
        self.client = MlflowClient(uri)

    def with_runs(self) -> list[Experiment]:
        """Active experiments holding at least one run (the empty Default is not worth a line)."""
        return [
            Experiment(e.experiment_id, e.name)
            for e in self.client.search_experiments()
            if self.client.search_runs([e.experiment_id], max_results=1)
        ]

    def run_params(
        self, experiment_id: str, filter_string: str = "", max_results: int = 100
    ) -> list[dict[str, str]]:
        """The params of the experiment's runs that match an MLflow filter string."""
        runs = self.client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=max_results
        )
        return [dict(r.data.params) for r in runs]

    def run_ids(
        self, experiment_id: str, filter_string: str = "", max_results: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        """(run id, tags) of the experiment's runs that match an MLflow filter string."""
        runs = self.client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=max_results
        )
        return [(r.info.run_id, dict(r.data.tags)) for r in runs]

    def tags(self, experiment_id: str) -> dict[str, str]:
        return dict(self.client.get_experiment(experiment_id).tags)

    def set_tag(self, experiment_id: str, key: str, value: str) -> None:
        self.client.set_experiment_tag(experiment_id, key, value)
