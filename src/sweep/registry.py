"""The study's best model in the MLflow model registry, under the alias `champion`.

A sweep registers its best trial's logged model as a version of `tracking.registered_model` and
points the alias at it, so `mlflow.keras.load_model("models:/<name>@champion")` always loads the
current best without knowing run or model ids. `python -m sweep predict` shows it at work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sweep import console
from sweep.config import existing_store
from sweep.errors import ConfigError
from sweep.tracking import MlflowClient, MlflowException

ALIAS = "champion"
DEFAULT_X = tuple(float(x) for x in range(-6, 7))


def logged_model_id(client: MlflowClient, run_id: str) -> str | None:
    """The id of the model a run logged (MLflow 3 keeps models beside runs, not inside them)."""
    run = client.get_run(run_id)
    models = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    return models[0].model_id if models else None


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name, description="Best model of a sweep of the sin(x) regressor."
            )
        except MlflowException:  # another worker created it in between
            client.get_registered_model(name)


def version_for(client: MlflowClient, name: str, model_id: str, run_id: str, tags: dict) -> Any:
    """The registry version of this logged model: the existing one, or a new one."""
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.source == f"models:/{model_id}":
            return mv
    return client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
    )


def register_best(uri: str, name: str, run_id: str, tags: dict[str, Any]) -> Any:
    """Register the run's model under `name` and point `champion` at it; returns the version."""
    client = MlflowClient(uri)
    model_id = logged_model_id(client, run_id)
    if model_id is None:
        raise MlflowException(f"run {run_id} logged no model (tracking.log_model=false?)")
    ensure_registered_model(client, name)
    mv = version_for(client, name, model_id, run_id, {k: str(v) for k, v in tags.items()})
    client.set_registered_model_alias(name, ALIAS, mv.version)
    return mv


def register_champion(cfg: Any, summary: dict[str, Any]) -> Any:
    """Called after a sweep's summary: register its best trial, or say why not. Never raises."""
    name = cfg.tracking.get("registered_model") if cfg.tracking.enabled else None
    run_id = summary.get("best_run_id")
    if not name or not run_id:
        return None
    tags = {
        "study": summary["study"],
        "trial": summary["best_trial"],
        "val_mse": summary["best_val_mse"],
        "run_id": run_id,
    }
    try:
        mv = register_best(cfg.tracking.uri, name, run_id, tags)
    except MlflowException as exc:
        console.say(f"warning: best model not registered: {str(exc).splitlines()[0]}")
        return None
    console.say(f"registered models:/{name}@{ALIAS} = version {mv.version} (trial {tags['trial']})")
    return mv


def load_champion(uri: str, name: str, alias: str = ALIAS) -> tuple[Any, Any]:
    """The Keras model behind `models:/<name>@<alias>`, with its registry version."""
    import mlflow.keras

    mlflow.set_tracking_uri(uri)
    mv = MlflowClient(uri).get_model_version_by_alias(name, alias)
    return mlflow.keras.load_model(f"models:/{name}@{alias}"), mv


def predict(model: Any, xs: np.ndarray) -> np.ndarray:
    x = np.asarray(xs, dtype=np.float32).reshape(-1, 1)
    return np.asarray(model(x, training=False)).ravel()


def prediction_table(xs: np.ndarray, pred: np.ndarray) -> str:
    """x, prediction, sin(x) and the error, one row each, then the MSE over them."""
    truth = np.sin(np.asarray(xs, dtype=np.float64))
    rows = [f"{'x':>8} {'prediction':>11} {'sin(x)':>9} {'error':>9}"]
    for x, p, t in zip(xs, pred, truth, strict=True):
        rows.append(f"{x:8.3f} {p:11.4f} {t:9.4f} {p - t:+9.4f}")
    rows.append(f"MSE over these {len(xs)} points: {np.mean((pred - truth) ** 2):.3e}")
    return "\n".join(rows)


def _number(text: str | None) -> str:
    try:
        return f"{float(text):.3e}"
    except (TypeError, ValueError):
        return "?"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sweep predict",
        description="Load models:/<model>@champion from the MLflow registry and predict sin(x).",
    )
    p.add_argument("--model", default="sine-mlp", help="registered model name (default sine-mlp)")
    p.add_argument("--alias", default=ALIAS, help=f"alias to load (default {ALIAS})")
    p.add_argument(
        "--store",
        type=Path,
        help="folder holding mlflow.db (default: $MLFLOW_TRACKING_URI, else mlruns)",
    )
    p.add_argument("--x", type=float, nargs="+", default=list(DEFAULT_X), help="inputs")
    return p.parse_args(argv)


def command(argv: list[str]) -> int:
    """`python -m sweep predict`: the champion's predictions beside sin(x)."""
    args = parse_args(argv)
    try:
        uri = existing_store(args.store).uri
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        model, mv = load_champion(uri, args.model, args.alias)
    except MlflowException as exc:
        print(
            f"error: models:/{args.model}@{args.alias}: {str(exc).splitlines()[0]} "
            "(a sweep registers its best model; run `make sweep` or `make report`)",
            file=sys.stderr,
        )
        return 2
    xs = np.asarray(args.x, dtype=np.float64)
    print(
        f"models:/{args.model}@{args.alias} = version {mv.version} "
        f"(study {mv.tags.get('study', '?')}, trial {mv.tags.get('trial', '?')}, "
        f"recorded val_mse {_number(mv.tags.get('val_mse'))})"
    )
    print(prediction_table(xs, predict(model, xs)))
    return 0
