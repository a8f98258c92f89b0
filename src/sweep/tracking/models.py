"""Keras models in MLflow: find the one a run logged, register it under an alias, load it back.

Loading is the trust boundary: a model read from a shared store is loaded only from its `.keras`
file, by Keras with `safe_mode=True`, never through `mlflow.keras.load_model` (see keras_file).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from sweep.errors import ConfigError
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


def keras_file(folder: Path, model_uri: str) -> Path:
    """The `.keras` file a downloaded MLflow model holds; anything else is refused in one line.

    A tracking store is shared: whoever can write to it can log a model. An MLmodel with
    `save_exported_model` makes mlflow.keras call `tf.saved_model.load`, which runs the graph it
    finds (a SavedModel is a program, and Keras's safe_mode does not apply); so only the `.keras`
    format is read, and from inside the downloaded folder only.
    """
    try:
        meta = yaml.safe_load((folder / "MLmodel").read_text())
        flavor = meta["flavors"]["keras"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"{model_uri}: not a Keras model logged by MLflow ({exc!r})") from exc
    if flavor.get("save_exported_model") or "tensorflow" in meta["flavors"]:
        raise ConfigError(
            f"{model_uri}: refused, it is an exported SavedModel, which runs code when loaded; "
            "only .keras models are loaded (with Keras's safe_mode)"
        )
    path = (folder / str(flavor.get("data", "data")) / "model.keras").resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise ConfigError(f"{model_uri}: refused, its MLmodel names no .keras file inside it")
    return path


def load_keras(uri: str, model_uri: str, location: str) -> Any:
    """A Keras model logged to MLflow, loaded by Keras alone in safe_mode.

    `location` is where its files are (an artifact URI read from this store's registry or its
    logged models), so no process-wide registry URI decides which store it comes from.
    """
    import sweep.backend  # noqa: F401 - TensorFlow quietly, before Keras loads

    # isort: split
    import keras
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=tmp, tracking_uri=uri
        )
        return keras.saving.load_model(keras_file(Path(local), model_uri), safe_mode=True)


def alias_tags(uri: str, name: str, alias: str) -> dict[str, str] | None:
    """The tags of the version `alias` points at, or None when there is none yet."""
    try:
        return dict(MlflowClient(uri).get_model_version_by_alias(name, alias).tags)
    except MlflowException:
        return None


def load_alias(uri: str, name: str, alias: str) -> tuple[Any, Any]:
    """The Keras model behind `models:/<name>@<alias>`, with its registry version."""
    client = MlflowClient(uri)
    mv = client.get_model_version_by_alias(name, alias)
    location = client.get_model_version_download_uri(name, mv.version)
    return load_keras(uri, f"models:/{name}@{alias}", location), mv


def load_run_model(uri: str, run_id: str | None) -> Any:
    """The Keras model a run logged, or None when it logged none."""
    client = MlflowClient(uri)
    model_id = logged_model_id(client, run_id) if run_id else None
    if model_id is None:
        return None
    location = client.get_logged_model(model_id).artifact_location
    return load_keras(uri, f"models:/{model_id}", location)
