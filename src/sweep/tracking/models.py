"""Keras models in MLflow: find the one a run logged, register it under an alias, load it back.

Loading is the trust boundary: a model read from a shared store is loaded only from its `.keras`
file, by Keras with `safe_mode=True`, never through `mlflow.keras.load_model` (see keras_file);
only that file and its MLmodel are downloaded, each size checked first (see check_archive).
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sweep.core.errors import ConfigError
from sweep.tracking.runs import MODEL_FILE, MlflowClient, MlflowException, Run

# What a downloaded model may take. Keras stores a .keras file's members uncompressed (ratio 1),
# so only a crafted archive expands; the caps hold the largest model a record may ask for
# (replay.MAX_PARAMS: 100M parameters, 1.2 GB with Adam's two slots) three times over.
MAX_MLMODEL_BYTES = 1 << 20  # MLflow writes ~1 KB of YAML
MAX_KERAS_BYTES = 4 << 30  # the .keras file as listed, and its members' uncompressed total
MAX_JSON_BYTES = 10 << 20  # config.json, metadata.json: ~1 KB a layer, so 1,000 layers ~1 MB
BOMB_FLOOR = 10 << 20  # a member above this that expands over MAX_EXPANSION times is a bomb
MAX_EXPANSION = 100  # (DEFLATE reaches ~1,000x; Keras's own guard starts at 4 GiB, too late)
MAX_DIRECTORY_BYTES = 1 << 20  # the zip's central directory, ~100 bytes a member (Keras: 3)
JSON_MEMBERS = ("config.json", "metadata.json")
DATA_DIR = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")  # MLmodel's `data`: "data"


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
    with tracking_at(uri):  # the registry checks `models:/...` through the process-wide URI
        model_id = logged_model_id(client, run_id) or promote(uri, client, run_id)
        _ensure_registered_model(client, name, description)
        mv = _version_for(client, name, model_id, run_id, {k: str(v) for k, v in tags.items()})
        client.set_registered_model_alias(name, alias, mv.version)
    return mv


def promote(uri: str, client: MlflowClient, run_id: str) -> str:
    """Log the full MLflow model (MLmodel, environment, signature) of a run that kept only its
    `.keras` file, from that file: done for the models that get registered, not every trial."""
    model = load_run_file(uri, client, run_id)
    if model is None:
        raise MlflowException(f"run {run_id} logged no model (tracking.log_model=false?)")
    spec = model.inputs[0]
    x = np.zeros((1, *spec.shape[1:]), dtype=str(getattr(spec.dtype, "name", spec.dtype)))
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id, "model", run_id, params=dict(run.data.params)
    )
    Run(client, run_id).log_model(model, x, requirements(), model_id=logged.model_id)
    return logged.model_id


@contextlib.contextmanager
def tracking_at(uri: str) -> Iterator[None]:
    """Model.log writes through MLflow's process-wide tracking URI: this store's, for a while."""
    import mlflow

    env = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri exports it too
    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def requirements() -> list[str]:
    """Pinned requirements for a logged model, read from what is installed."""
    from sweep.train import provenance

    v = provenance.versions()
    return [f"tensorflow=={v['tensorflow']}", f"keras=={v['keras']}", f"numpy=={v['numpy']}"]


def keras_member(folder: Path, model_uri: str) -> str:
    """The `.keras` file's path inside the model, from its MLmodel; anything else is refused.

    A tracking store is shared: whoever can write to it can log a model. An MLmodel with
    `save_exported_model` makes mlflow.keras call `tf.saved_model.load`, which runs the graph it
    finds (a SavedModel is a program, and Keras's safe_mode does not apply); so only the `.keras`
    format is read, and from inside the model's own folder only (checked before downloading).
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
    data = str(flavor.get("data", "data"))
    if not DATA_DIR.match(data) or ".." in data.split("/"):
        raise ConfigError(f"{model_uri}: refused, its MLmodel names no .keras file inside it")
    return f"{data}/model.keras"


def keras_file(folder: Path, model_uri: str) -> Path:
    """The `.keras` file a downloaded MLflow model holds (see keras_member)."""
    path = (folder / keras_member(folder, model_uri)).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise ConfigError(f"{model_uri}: refused, its MLmodel names no .keras file inside it")
    return path


def fetch(uri: str, location: str, member: str, folder: Path, cap: int, model_uri: str) -> Path:
    """Download one file of the model into folder, refused in one line when its listed size is
    above cap: the rest of a model's folder (anyone's, on a shared store) is never fetched."""
    import mlflow.artifacts

    parent, _, name = member.rpartition("/")
    where = f"{location.rstrip('/')}/{parent}" if parent else location
    listed = mlflow.artifacts.list_artifacts(artifact_uri=where, tracking_uri=uri)
    size = next((f.file_size for f in listed if f.path.rsplit("/", 1)[-1] == name), None)
    if size is None:
        raise ConfigError(f"{model_uri}: refused, it holds no {member}")
    if size > cap:
        raise ConfigError(f"{model_uri}: refused, its {member} is {size:,} bytes (at most {cap:,})")
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{where}/{name}", dst_path=str(folder / parent), tracking_uri=uri
    )
    return Path(local)


def check_archive(path: Path, model_uri: str) -> None:
    """Refuse a `.keras` zip that would inflate beyond the caps, from its directory alone: the
    sizes zipfile declares are the most it will ever decompress, so nothing is read before."""
    directory = directory_bytes(path)
    if directory is None or directory > MAX_DIRECTORY_BYTES:
        raise ConfigError(f"{model_uri}: refused, its .keras file is not a plain zip of Keras's")
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    total = sum(m.file_size for m in members)
    if total > MAX_KERAS_BYTES:
        raise ConfigError(
            f"{model_uri}: refused, its .keras file inflates to {total:,} bytes "
            f"(at most {MAX_KERAS_BYTES:,})"
        )
    for m in members:
        bomb = m.file_size > BOMB_FLOOR and m.file_size > MAX_EXPANSION * m.compress_size
        if bomb or (m.filename in JSON_MEMBERS and m.file_size > MAX_JSON_BYTES):
            raise ConfigError(
                f"{model_uri}: refused, its .keras member {m.filename!r} inflates "
                f"{m.compress_size:,} bytes to {m.file_size:,}"
            )


def directory_bytes(path: Path) -> int | None:
    """The zip's central directory size from its end record, found as zipfile finds it (which
    reads that many bytes into ZipInfo objects, ~10x larger); None without one, or for ZIP64
    (an archive beyond 4 GiB: the cap refuses it anyway)."""
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - (1 << 16) - 22))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22 or tail[max(0, at - 20) : at].startswith(b"PK\x06\x07"):
        return None
    (size,) = struct.unpack_from("<I", tail, at + 12)
    return None if size == 0xFFFFFFFF else size


def load_keras(uri: str, model_uri: str, location: str) -> Any:
    """A Keras model logged to MLflow, loaded by Keras alone in safe_mode.

    `location` is where its files are (an artifact URI read from this store's registry or its
    logged models), so no process-wide registry URI decides which store it comes from.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fetch(uri, location, "MLmodel", folder, MAX_MLMODEL_BYTES, model_uri)
        fetch(uri, location, keras_member(folder, model_uri), folder, MAX_KERAS_BYTES, model_uri)
        return load_checked(keras_file(folder, model_uri), model_uri)


def load_checked(path: Path, model_uri: str) -> Any:
    """A downloaded `.keras` file, its zip checked against the caps, loaded in safe_mode."""
    import sweep.train.backend  # noqa: F401 - TensorFlow quietly, before Keras loads

    # isort: split
    import keras

    check_archive(path, model_uri)
    return keras.saving.load_model(path, safe_mode=True)


def load_run_file(uri: str, client: MlflowClient, run_id: str) -> Any:
    """The model a run kept as its `.keras` artifact (`Run.log_keras`), or None without one."""
    if MODEL_FILE not in {f.path for f in client.list_artifacts(run_id)}:
        return None
    location = client.get_run(run_id).info.artifact_uri
    model_uri = f"runs:/{run_id}/{MODEL_FILE}"
    with tempfile.TemporaryDirectory() as tmp:
        path = fetch(uri, location, MODEL_FILE, Path(tmp), MAX_KERAS_BYTES, model_uri)
        return load_checked(path, model_uri)


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
    """The Keras model a run logged, or None when it logged none: its `.keras` artifact, or
    for a run made before trials kept one (or registered since), its full MLflow model."""
    if not run_id:
        return None
    client = MlflowClient(uri)
    model = load_run_file(uri, client, run_id)
    if model is not None:
        return model
    model_id = logged_model_id(client, run_id)
    if model_id is None:
        return None
    location = client.get_logged_model(model_id).artifact_location
    return load_keras(uri, f"models:/{model_id}", location)
