"""`python -m sweep ui`: serve the project's MLflow store and print where its runs are.

MLflow 3.17's UI opens an experiment on a GenAI overview of traces unless the URL asks for
`workflowType=machine_learning`, and its runs table shows no params or metrics until columns are
picked by hand. Both are fixed here with MLflow's own mechanisms, not a patched UI:

- the printed address carries `?workflowType=machine_learning`, and the experiment is tagged
  `mlflow.experimentKind=custom_model_development`, which the UI reads when you navigate to it;
- two *shared views* are stored as experiment tags `mlflow.sharedViewState.<key>` (what the UI's
  own "Share" button writes) and selected by `viewStateShareKey=<key>` in the address: `sweep`
  (trials nested under their study, the swept params and the objective's metrics as columns) and
  `sweep-by-<objective>` (every run flat, best first by the study's objective: `sweep-by-val-mse`
  for the tutorial, `sweep-by-val-accuracy`, highest first, for a classifier).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sweep.config import Store, mask_url, printable

if TYPE_CHECKING:
    from sweep.tracking import Experiments  # imports mlflow: only inside main

VIEW_NESTED = "sweep"
SHARE_TAG = "mlflow.sharedViewState."
KIND_TAG = "mlflow.experimentKind"
TUTORIAL = (("val_mse", "minimize"),)
DEFAULT_SWEPT = ("model.depth", "model.width", "model.activation", "optimizer.learning_rate")
STARTUP_SECONDS = 120
# Runs sweep logged (every kind carries the tag); an experiment without one is left untouched.
OURS = "tags.`sweep.kind` LIKE '%'"
CHART_SECTION = "sweep-charts"
RUNS_TO_COMPARE = 500  # MLflow's ceiling for a chart's runs (the UI's default is 10)


def runs_url(base: str, experiment_id: str, view: str | None = None) -> str:
    """Address of an experiment's runs table in model-training mode, optionally in a view."""
    query = {"workflowType": "machine_learning"}
    if view:
        query["viewStateShareKey"] = view
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def column(group: str, key: str) -> str:
    """The UI's canonical column key, e.g. params.`model.depth`."""
    return f"{group}.`{key}`"


SWEPT_PARAM = "sweep.params"  # logged on a parent run by study.py
OBJECTIVES_PARAM = "sweep.objectives"  # likewise: the study's metrics, comma-separated
DIRECTIONS_PARAM = "sweep.directions"  # and their directions (parents before it: by the name)


def best_view(objective: str) -> str:
    """The best-first view's key for an objective: sweep-by-val-mse, sweep-by-val-accuracy."""
    return "sweep-by-" + objective.replace("_", "-")


VIEW_BEST = best_view(TUTORIAL[0][0])  # the tutorial's: sweep-by-val-mse


def swept_params(experiments: Experiments, experiment_id: str) -> list[str]:
    """The params a study sweeps: every key any trial may sample (a conditional space's branch
    keys included), logged on its parent run; older parents give their `search.space.*`."""
    parents = experiments.run_params(experiment_id, "tags.`sweep.kind` = 'sweep'")
    listed = {k for params in parents for k in params.get(SWEPT_PARAM, "").split(",") if k}
    if listed:
        return sorted(listed)
    prefix = "search.space."
    keys = {k[len(prefix) :] for params in parents for k in params if k.startswith(prefix)}
    return sorted(keys) if keys else list(DEFAULT_SWEPT)


def study_objectives(experiments: Experiments, experiment_id: str) -> list[tuple[str, str]]:
    """The objective(s) of the experiment's studies as (metric, direction), first objective
    first, from their parents' params: a study of several objectives wins (its views have the
    Pareto chart); an experiment with no such parent is the tutorial's (val_mse, minimize)."""
    parents = experiments.run_params(experiment_id, "tags.`sweep.kind` = 'sweep'")
    found = []
    for params in parents:
        names = [n for n in params.get(OBJECTIVES_PARAM, "").split(",") if n]
        directions = [d for d in params.get(DIRECTIONS_PARAM, "").split(",") if d]
        if len(directions) != len(names):  # a parent from before directions were logged
            directions = ["maximize" if n.endswith("accuracy") else "minimize" for n in names]
        if names:
            found.append(list(zip(names, directions, strict=True)))
    return max(found, key=len, default=list(TUTORIAL))


def metric_columns(objectives: Sequence[tuple[str, str]]) -> list[str]:
    """The runs table's metrics: the first objective on every split, the others, train_seconds
    (val_mse, test_mse, train_mse, train_seconds for the tutorial)."""
    first = objectives[0][0]
    split, _, metric = first.partition("_")
    columns = [f"{s}_{metric}" for s in ("val", "test", "train")] if split == "val" else [first]
    columns += [name for name, _ in objectives[1:]] + ["train_seconds"]
    return list(dict.fromkeys(columns))


def charts(
    swept: list[str], objectives: Sequence[tuple[str, str]] = TUTORIAL
) -> tuple[list[dict], list[dict]]:
    """Chart view: parallel coordinates of the swept params to the objective, lr against it,
    and with several objectives the first against the second (the Pareto front's scatter)."""
    first = objectives[0][0]
    section = {
        "uuid": CHART_SECTION,
        "name": "Sweep",
        "display": True,
        "isReordered": False,
        "deleted": False,
        "isGenerated": False,
    }
    base = {"metricSectionId": CHART_SECTION, "deleted": False, "isGenerated": False}
    parallel = {
        **base,
        "uuid": "sweep-parallel",
        "type": "PARALLEL",
        "runsCountToCompare": RUNS_TO_COMPARE,
        "selectedParams": swept,
        "selectedMetrics": [first],
        "showAllRuns": True,
    }
    scatter = {
        **base,
        "uuid": "sweep-scatter",
        "type": "SCATTER",
        "runsCountToCompare": RUNS_TO_COMPARE,
        "xaxis": {"key": "optimizer.learning_rate", "type": "PARAM"},
        "yaxis": {"key": first, "type": "METRIC"},
    }
    cards = [parallel, scatter] if "optimizer.learning_rate" in swept else [parallel]
    if len(objectives) > 1:  # the baseline run is the one tagged sweep.baseline
        cards.append(
            {
                **base,
                "uuid": "sweep-pareto",
                "type": "SCATTER",
                "runsCountToCompare": 100,
                "xaxis": {"key": objectives[1][0], "type": "METRIC"},
                "yaxis": {"key": first, "type": "METRIC"},
            }
        )
    return cards, [section]


def view_states(
    swept: list[str], objectives: Sequence[tuple[str, str]] = TUTORIAL
) -> dict[str, dict[str, Any]]:
    """The two shared views, in the JSON shape the UI's share button stores."""
    first, direction = objectives[0]
    columns = [column("params", k) for k in swept]
    columns += [column("metrics", m) for m in metric_columns(objectives)]
    columns += [column("params", "n_params"), column("tags", "sweep.state")]
    columns += [column("tags", "sweep.baseline")] if len(objectives) > 1 else []
    cards, sections = charts(swept, objectives)
    nested = {
        "selectedColumns": columns,
        "columnOrder": columns,
        "runListHidden": False,
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": cards,
        "compareRunSections": sections,
    }
    best = {
        **nested,
        "orderByKey": column("metrics", first),
        "orderByAsc": direction == "minimize",
    }
    return {VIEW_NESTED: nested, best_view(first): best}


def install_views(experiments: Experiments, experiment_id: str) -> None:
    """Tag the experiment so the UI opens it as model training, with the two views available."""
    if not experiments.tags(experiment_id).get(KIND_TAG):
        experiments.set_tag(experiment_id, KIND_TAG, "custom_model_development")
    swept = swept_params(experiments, experiment_id)
    states = view_states(swept, study_objectives(experiments, experiment_id))
    for key, state in states.items():
        experiments.set_tag(experiment_id, SHARE_TAG + key, json.dumps(state))


def studies(experiments: Experiments, experiment_id: str) -> list[tuple[str, str]]:
    """(study name, parent run id) of each sweep in the experiment."""
    parents = experiments.run_ids(experiment_id, "tags.`sweep.kind` = 'sweep'")
    return sorted((tags.get("sweep.study_name", run_id), run_id) for run_id, tags in parents)


def curves_url(base: str, experiment_id: str, parent_run_id: str) -> str:
    """The parent run's chart of every trial's learning curve, opened in the UI."""
    from sweep.summary import LEARNING_CURVES

    return (
        f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{parent_run_id}"
        f"/artifacts/{LEARNING_CURVES}"
    )


def addresses(experiments: Experiments, base: str) -> list[str]:
    """One block of lines per experiment: its nested runs view and its best-first view."""
    lines = []
    for exp in experiments.with_runs():
        if not experiments.run_params(exp.id, OURS, max_results=1):
            continue  # another project's experiment on a shared server: not ours to tag
        install_views(experiments, exp.id)
        first = study_objectives(experiments, exp.id)[0][0]
        lines += [
            printable(f"experiment {exp.name!r}:"),
            f"  runs (trials nested under their study)  {runs_url(base, exp.id, VIEW_NESTED)}",
            f"  all runs by {first}, best first".ljust(41)
            + f" {runs_url(base, exp.id, best_view(first))}",
        ]
        lines += [
            printable(f"  learning curves of study {study!r}  ") + curves_url(base, exp.id, run)
            for study, run in studies(experiments, exp.id)
        ]
    return lines or [f"no runs yet: open {base}/#/experiments after `make sweep`"]


def server_args(store: Store, host: str, port: int) -> list[str]:
    """`mlflow server` options for one local user: one worker, no access log."""
    return [
        "--backend-store-uri",
        store.uri,
        "--default-artifact-root",
        (store.folder / "artifacts").as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--uvicorn-opts=--no-access-log",  # the terminal keeps the addresses, not every request
    ]


def main(store: Store, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Serve the store until Ctrl-C; a tracking server URI is not served again, only linked."""
    from sweep.tracking import Experiments, check_port, local_url, serve

    if store.uri.startswith(("http:", "https:")):
        shown = mask_url(store.uri).rstrip("/")
        lines = addresses(Experiments(store.uri), shown)
        print("\n".join([f"MLflow server at {shown}", *lines]), flush=True)
        return 0
    check_port(host, port)
    base = local_url(host, port)
    lines = addresses(Experiments(store.uri), base)

    def announce() -> None:
        print(f"MLflow UI for {mask_url(store.uri)} at {base}  (Ctrl-C to stop)")
        print("\n".join(lines), flush=True)

    return serve(server_args(store, host, port), base, on_ready=announce, timeout=STARTUP_SECONDS)
