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
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sweep.config.stores import Store
from sweep.core.secrets import mask_url, printable

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
PARENTS = "tags.`sweep.kind` = 'sweep'"
CHART_SECTION = "sweep-charts"
RUNS_TO_COMPARE = 500  # MLflow's ceiling for a chart's runs (the UI's default is 10)
# The chart section's layout, which MLflow keeps in the view state (`columns`, `cardHeight` of a
# compareRunSections entry). Its default, 3 cards a row beside the runs list, draws each card
# about 140 px wide at 1400 px: parallel coordinates' labels overlap. One card a row is readable.
CHART_COLUMNS = 1
CHART_HEIGHT = 420


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


# A parent run's params are anyone's data on a shared server; one malformed parent is skipped
# with one line, not a traceback for everyone. What a well-formed one holds:
RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # MLflow's run ids, safe inside a filter string
CONFIG_KEY = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")  # model.depth, a view's column
MAX_KEY = 100  # characters of a swept key (a study name's limit too)
MAX_SWEPT = 100  # keys one parent sweeps (conf/'s spaces: 4-6)
MAX_VIEW_CHARS = 20_000  # MLflow's longest experiment tag value (MAX_EXPERIMENT_TAG_VAL_LENGTH)


@dataclass(frozen=True)
class Parent:
    """A study's parent run: its id and study name (for the skip line), and its params."""

    run_id: str
    study: str
    params: dict[str, str]


def parents(experiments: Experiments, experiment_id: str) -> list[Parent]:
    """The experiment's sweep parent runs with their params (one query each, by id)."""
    out = []
    for run_id, tags in experiments.run_ids(experiment_id, PARENTS):
        query = f"attributes.run_id = '{run_id}'"
        found = experiments.run_params(experiment_id, query, 1) if RUN_ID.match(run_id) else []
        out.append(Parent(run_id, tags.get("sweep.study_name", ""), found[0] if found else {}))
    return out


def skipped(parent: Parent, why: str) -> None:
    """The one line that says a malformed parent was left out of the views."""
    line = f"ui: skipped parent run {parent.run_id}"
    line += f" (study {shown(parent.study)})" if parent.study else ""
    print(printable(f"{line}: {why}"), file=sys.stderr, flush=True)


def shown(value: str, limit: int = 60) -> str:
    """A value from the store, short enough for one line (printable masks it after)."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value):,})"


def listed(params: dict[str, str], key: str) -> list[str]:
    return [item for item in params.get(key, "").split(",") if item]


def parent_swept(params: dict[str, str]) -> list[str]:
    """The keys one parent sweeps (older parents: their `search.space.*`); ValueError names the
    first one no config has."""
    prefix = "search.space."
    keys = listed(params, SWEPT_PARAM) or [k[len(prefix) :] for k in params if k.startswith(prefix)]
    if len(keys) > MAX_SWEPT:
        raise ValueError(f"{SWEPT_PARAM} lists {len(keys):,} keys (at most {MAX_SWEPT})")
    bad = next((k for k in keys if len(k) > MAX_KEY or not CONFIG_KEY.match(k)), None)
    if bad is not None:
        raise ValueError(f"{SWEPT_PARAM} holds {shown(bad)}, not a config key")
    return keys


def parent_objectives(params: dict[str, str]) -> list[tuple[str, str]]:
    """One parent's (metric, direction) pairs; ValueError names what is malformed."""
    from sweep.config.space import DIRECTIONS

    names = listed(params, OBJECTIVES_PARAM)
    bad = next((n for n in names if n not in known_metrics()), None)
    if bad is not None:
        raise ValueError(f"{OBJECTIVES_PARAM} holds {shown(bad)}, not a metric sweep logs")
    if DIRECTIONS_PARAM not in params:  # a parent from before directions were logged
        return [(n, "maximize" if n.endswith("accuracy") else "minimize") for n in names]
    directions = listed(params, DIRECTIONS_PARAM)
    if len(directions) != len(names) or not set(directions) <= set(DIRECTIONS):
        raise ValueError(
            f"{DIRECTIONS_PARAM}={shown(params[DIRECTIONS_PARAM])} does not give minimize or "
            f"maximize for each of {len(names)} objective(s)"
        )
    return list(zip(names, directions, strict=True))


def known_metrics() -> set[str]:
    """Every final metric a run of any task logs: what search.objectives may name."""
    from sweep.config.space import RUN_METRICS, TASK_METRICS

    per_split = {m for metrics in TASK_METRICS.values() for m in metrics}
    return {f"{s}_{m}" for s in ("val", "train", "test") for m in per_split} | set(RUN_METRICS)


def swept_of(found: Sequence[Parent]) -> list[str]:
    """The params the studies sweep: every key any trial may sample (a conditional space's
    branch keys included), from the well-formed parents; the tutorial's when none says."""
    new, old = set(), set()
    for parent in found:
        try:
            keys = parent_swept(parent.params)
        except ValueError as exc:
            skipped(parent, str(exc))
            continue
        (new if SWEPT_PARAM in parent.params else old).update(keys)
    return sorted(new or old) or list(DEFAULT_SWEPT)


def objectives_of(found: Sequence[Parent]) -> list[tuple[str, str]]:
    """The objective(s) as (metric, direction), first objective first: a study of several wins
    (its views have the Pareto chart); with no well-formed parent, the tutorial's."""
    out = []
    for parent in found:
        try:
            pairs = parent_objectives(parent.params)
        except ValueError as exc:
            skipped(parent, str(exc))
            continue
        if pairs:
            out.append(pairs)
    return max(out, key=len, default=list(TUTORIAL))


def swept_params(experiments: Experiments, experiment_id: str) -> list[str]:
    """The params the experiment's studies sweep (see swept_of)."""
    return swept_of(parents(experiments, experiment_id))


def study_objectives(experiments: Experiments, experiment_id: str) -> list[tuple[str, str]]:
    """The objective(s) of the experiment's studies (see objectives_of)."""
    return objectives_of(parents(experiments, experiment_id))


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
        "columns": CHART_COLUMNS,
        "cardHeight": CHART_HEIGHT,
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
    """The two shared views, in the JSON shape the UI's share button stores.

    Columns: the objective, the trial's state (pruned or failed: MLflow's own status shows both
    as a red cross), the swept params, then the other metrics; at 1400 px the first few are all
    that fit beside the run names.
    """
    first, direction = objectives[0]
    metrics = [column("metrics", m) for m in metric_columns(objectives)]
    columns = [metrics[0], column("tags", "sweep.state")]
    columns += [column("params", k) for k in swept] + metrics[1:]
    columns += [column("params", "n_params")]
    columns += [column("tags", "sweep.baseline")] if len(objectives) > 1 else []
    cards, sections = charts(swept, objectives)
    nested = {
        "selectedColumns": columns,
        "columnOrder": columns,
        "runListHidden": True,  # in chart mode: the cards take the width; the table is unaffected
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


def install_views(experiments: Experiments, experiment_id: str) -> list[tuple[str, str]]:
    """Tag the experiment so the UI opens it as model training, with the two views available;
    returns the objectives they rank by. A view MLflow could not store is skipped, said."""
    if not experiments.tags(experiment_id).get(KIND_TAG):
        experiments.set_tag(experiment_id, KIND_TAG, "custom_model_development")
    found = parents(experiments, experiment_id)
    objectives = objectives_of(found)
    for key, state in view_states(swept_of(found), objectives).items():
        text = json.dumps(state)
        if len(text) > MAX_VIEW_CHARS:
            print(
                f"ui: view {key!r} of experiment {experiment_id} not stored: {len(text):,} "
                f"characters, MLflow keeps at most {MAX_VIEW_CHARS:,}",
                file=sys.stderr,
            )
            continue
        experiments.set_tag(experiment_id, SHARE_TAG + key, text)
    return objectives


def studies(experiments: Experiments, experiment_id: str) -> list[tuple[str, str]]:
    """(study name, parent run id) of each sweep in the experiment."""
    found = experiments.run_ids(experiment_id, PARENTS)
    return sorted((tags.get("sweep.study_name", run_id), run_id) for run_id, tags in found)


def curves_url(base: str, experiment_id: str, parent_run_id: str) -> str:
    """The parent run's chart of every trial's learning curve, opened in the UI in
    model-training mode (without the query MLflow 3 opens the run in GenAI mode)."""
    from sweep.study.summary import LEARNING_CURVES

    return (
        f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{parent_run_id}"
        f"/artifacts/{LEARNING_CURVES}?{urlencode({'workflowType': 'machine_learning'})}"
    )


def addresses(experiments: Experiments, base: str) -> list[str]:
    """One block of lines per experiment: its nested runs view and its best-first view."""
    lines = []
    for exp in experiments.with_runs():
        if not experiments.run_params(exp.id, OURS, max_results=1):
            continue  # another project's experiment on a shared server: not ours to tag
        first = install_views(experiments, exp.id)[0][0]
        lines += [
            printable(f"experiment {exp.name!r}:"),
            f"  runs (trials nested under their study)  {runs_url(base, exp.id, VIEW_NESTED)}",
            f"  all runs by {first}, best first".ljust(41)
            + f" {runs_url(base, exp.id, best_view(first))}",
        ]
        lines += [
            printable(f"  learning curves of study {shown(study)}  ")
            + curves_url(base, exp.id, run)
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


def ui_command(store: Store, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Serve the store until Ctrl-C; a tracking server URI is not served again, only linked."""
    from sweep.core.processes import check_port, local_url, without_password
    from sweep.tracking.mlflow_server import serve  # MLflow itself only once the server boots

    if store.uri.startswith(("http:", "https:")):
        from sweep.tracking import Experiments

        shown = mask_url(store.uri).rstrip("/")
        lines = addresses(Experiments(store.uri), shown)
        print("\n".join([f"MLflow server at {shown}", *lines]), flush=True)
        return 0
    uri, secret = without_password(store.uri)  # the password in PGPASSWORD, not in `ps`
    check_port(host, port)
    base = local_url(host, port)

    def announce() -> None:
        from sweep.tracking import Experiments

        # After the server answers: a new store's schema is its to create, not ours in parallel.
        lines = addresses(Experiments(store.uri), base)
        print(f"MLflow UI for {mask_url(store.uri)} at {base}  (Ctrl-C to stop)")
        print("\n".join(lines), flush=True)

    args = server_args(Store(uri, store.folder), host, port)
    env = os.environ | secret
    return serve(args, base, env=env, on_ready=announce, timeout=STARTUP_SECONDS)
