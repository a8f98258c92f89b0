"""`python -m sweep ui`: serve the project's MLflow store and print where its runs are.

MLflow 3.17's UI opens an experiment on a GenAI overview of traces unless the URL asks for
`workflowType=machine_learning`, and its runs table shows no params or metrics until columns are
picked by hand. Both are fixed here with MLflow's own mechanisms, not a patched UI:

- the printed address carries `?workflowType=machine_learning`, and the experiment is tagged
  `mlflow.experimentKind=custom_model_development`, which the UI reads when you navigate to it;
- two *shared views* are stored as experiment tags `mlflow.sharedViewState.<key>` (what the UI's
  own "Share" button writes) and selected by `viewStateShareKey=<key>` in the address: `sweep`
  (trials nested under their study, the swept params and the MSEs as columns) and
  `sweep-by-val-mse` (every run flat, sorted by validation MSE, best first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sweep.config import existing_store
from sweep.errors import ConfigError

VIEW_NESTED = "sweep"
VIEW_BEST = "sweep-by-val-mse"
SHARE_TAG = "mlflow.sharedViewState."
KIND_TAG = "mlflow.experimentKind"
METRIC_COLUMNS = ("val_mse", "test_mse", "train_mse", "train_seconds")
DEFAULT_SWEPT = ("model.depth", "model.width", "model.activation", "optimizer.learning_rate")
STARTUP_SECONDS = 120
CHART_SECTION = "sweep-charts"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sweep ui",
        description="Serve the project's MLflow store with `mlflow server` on 127.0.0.1 and "
        "print the address of each experiment's runs table.",
    )
    p.add_argument(
        "--store",
        type=Path,
        help="folder holding mlflow.db and artifacts/ (default: $MLFLOW_TRACKING_URI, else mlruns)",
    )
    p.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    return p.parse_args(argv)


def base_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def runs_url(base: str, experiment_id: str, view: str | None = None) -> str:
    """Address of an experiment's runs table in model-training mode, optionally in a view."""
    query = {"workflowType": "machine_learning"}
    if view:
        query["viewStateShareKey"] = view
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def column(group: str, key: str) -> str:
    """The UI's canonical column key, e.g. params.`model.depth`."""
    return f"{group}.`{key}`"


def swept_params(client: Any, experiment_id: str) -> list[str]:
    """The params a study sweeps, read from its parent run's `search.space.*` params."""
    parents = client.search_runs(
        [experiment_id], filter_string="tags.`sweep.kind` = 'sweep'", max_results=100
    )
    prefix = "search.space."
    keys = {k[len(prefix) :] for r in parents for k in r.data.params if k.startswith(prefix)}
    return sorted(keys) if keys else list(DEFAULT_SWEPT)


def charts(swept: list[str]) -> tuple[list[dict], list[dict]]:
    """Chart view: parallel coordinates of the swept params to val_mse, and lr against val_mse."""
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
        "runsCountToCompare": 100,
        "selectedParams": swept,
        "selectedMetrics": ["val_mse"],
        "showAllRuns": True,
    }
    scatter = {
        **base,
        "uuid": "sweep-scatter",
        "type": "SCATTER",
        "runsCountToCompare": 100,
        "xaxis": {"key": "optimizer.learning_rate", "type": "PARAM"},
        "yaxis": {"key": "val_mse", "type": "METRIC"},
    }
    cards = [parallel, scatter] if "optimizer.learning_rate" in swept else [parallel]
    return cards, [section]


def view_states(swept: list[str]) -> dict[str, dict[str, Any]]:
    """The two shared views, in the JSON shape the UI's share button stores."""
    columns = [column("params", k) for k in swept]
    columns += [column("metrics", m) for m in METRIC_COLUMNS]
    columns += [column("params", "n_params"), column("tags", "sweep.state")]
    cards, sections = charts(swept)
    nested = {
        "selectedColumns": columns,
        "columnOrder": columns,
        "runListHidden": False,
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": cards,
        "compareRunSections": sections,
    }
    best = {**nested, "orderByKey": column("metrics", "val_mse"), "orderByAsc": True}
    return {VIEW_NESTED: nested, VIEW_BEST: best}


def install_views(client: Any, experiment_id: str) -> None:
    """Tag the experiment so the UI opens it as model training, with the two views available."""
    exp = client.get_experiment(experiment_id)
    if not exp.tags.get(KIND_TAG):
        client.set_experiment_tag(experiment_id, KIND_TAG, "custom_model_development")
    for key, state in view_states(swept_params(client, experiment_id)).items():
        client.set_experiment_tag(experiment_id, SHARE_TAG + key, json.dumps(state))


def experiments_with_runs(client: Any) -> list[Any]:
    """Active experiments that hold at least one run (the empty Default is not worth a line)."""
    return [
        e
        for e in client.search_experiments()
        if client.search_runs([e.experiment_id], max_results=1)
    ]


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start_server(uri: str, artifacts: Path, host: str, port: int) -> subprocess.Popen:
    """`mlflow server` in its own process group: one worker, no GenAI job runner."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        artifacts.as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--uvicorn-opts=--no-access-log",  # the terminal keeps the addresses, not every request
    ]
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = STARTUP_SECONDS) -> bool:
    """Poll /health until the server answers; False if it died or took too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url + "/health", timeout=2) as resp,
        ):
            if resp.status == 200:
                return True
        time.sleep(0.5)
    return False


def stop(proc: subprocess.Popen) -> None:
    """End the server and its workers (its whole process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def addresses(client: Any, base: str) -> list[str]:
    """One block of lines per experiment: its nested runs view and its best-first view."""
    lines = []
    for exp in experiments_with_runs(client):
        exp_id = exp.experiment_id
        install_views(client, exp_id)
        lines += [
            f"experiment {exp.name!r}:",
            f"  runs (trials nested under their study)  {runs_url(base, exp_id, VIEW_NESTED)}",
            f"  all runs by val_mse, best first         {runs_url(base, exp_id, VIEW_BEST)}",
        ]
    return lines or [f"no runs yet: open {base}/#/experiments after `make sweep`"]


def command(argv: list[str]) -> int:
    """Serve the store until Ctrl-C; a tracking server URI is not served again, only linked."""
    args = parse_args(argv)
    try:
        store = existing_store(args.store)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uri, folder = store.uri, store.folder
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    if uri.startswith(("http:", "https:")):
        print("\n".join([f"MLflow server at {uri}", *addresses(client, uri.rstrip("/"))]))
        return 0
    if not port_free(args.host, args.port):
        hint = f"try `make ui PORT={args.port + 1}`"
        print(f"error: port {args.port} is in use; {hint}", file=sys.stderr)
        return 2
    base = base_url(args.host, args.port)
    lines = addresses(client, base)
    return serve(uri, folder / "artifacts", args.host, args.port, lines)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(uri: str, artifacts: Path, host: str, port: int, lines: list[str]) -> int:
    """Start the server, print the addresses once it answers, and stay until interrupted."""
    from sweep.config import mask_url

    proc = start_server(uri, artifacts, host, port)
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: it may arrive ignored
        signal.signal(signum, _interrupt)
    try:
        if not wait_healthy(base_url(host, port), proc):
            print("error: mlflow server did not start; see its output above", file=sys.stderr)
            return 1
        print(f"MLflow UI for {mask_url(uri)} at {base_url(host, port)}  (Ctrl-C to stop)")
        print("\n".join(lines), flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(proc)


def main(store: Any, host: str = "127.0.0.1", port: int = 5000) -> int:
    """The runner's entry (interim: the launcher is being unified)."""
    return command(["--store", str(store.folder), "--port", str(port), "--host", host])
