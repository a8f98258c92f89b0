"""Keras models in MLflow: find the one a run logged, register it under an alias, load it back."""

from __future__ import annotations

from typing import Any

from sweep.tracking.runs import MlflowClient, MlflowException


def logged_model_id(client: MlflowClient, run_id: str) -> str | None:
    """The id of the model a run logged (MLflow 3 keeps models beside runs, not inside them)."""
    run = client.get_run(run_id)
    models = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    return models[0].model_id if models else None


def _ensure_registered_model(client: MlflowClient, name: str, description: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description=description)
        except MlflowException:  # another worker created it in between
            client.get_registered_model(name)


def _version_for(client: MlflowClient, name: str, model_id: str, run_id: str, tags: dict) -> Any:
    """The registry version of this logged model: the existing one, or a new one."""
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.source == f"models:/{model_id}":
            return mv
    return client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
    )


def register(
    uri: str, name: str, alias: str, run_id: str, tags: dict[str, Any], description: str = ""
) -> Any:
    """Register the run's model under `name` and point `alias` at it; returns the version."""
    client = MlflowClient(uri)
    model_id = logged_model_id(client, run_id)
    if model_id is None:
        raise MlflowException(f"run {run_id} logged no model (tracking.log_model=false?)")
    _ensure_registered_model(client, name, description)
    mv = _version_for(client, name, model_id, run_id, {k: str(v) for k, v in tags.items()})
    client.set_registered_model_alias(name, alias, mv.version)
    return mv


def load_keras(uri: str, model_uri: str) -> Any:
    """A Keras model logged to MLflow (`models:/...`), loaded back."""
    import sweep.backend  # noqa: F401 - TensorFlow quietly, before mlflow.keras imports it

    # isort: split
    import mlflow
    import mlflow.keras

    mlflow.set_tracking_uri(uri)
    return mlflow.keras.load_model(model_uri)


def load_alias(uri: str, name: str, alias: str) -> tuple[Any, Any]:
    """The Keras model behind `models:/<name>@<alias>`, with its registry version."""
    mv = MlflowClient(uri).get_model_version_by_alias(name, alias)
    return load_keras(uri, f"models:/{name}@{alias}"), mv


def load_run_model(uri: str, run_id: str | None) -> Any:
    """The Keras model a run logged, or None when it logged none."""
    model_id = logged_model_id(MlflowClient(uri), run_id) if run_id else None
    return load_keras(uri, f"models:/{model_id}") if model_id else None
