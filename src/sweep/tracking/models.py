"""Keras models in MLflow: find the one a run logged, register it under an alias, load it back.

Loading is the trust boundary: a model read from a shared store is loaded only from its `.keras`
file, by Keras with `safe_mode=True`, never through `mlflow.keras.load_model` (see keras_file);
only that file and its MLmodel are downloaded, each size checked first (see check_archive).
"""

from __future__ import annotations

import re
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

from sweep.core.errors import ConfigError
from sweep.tracking.runs import MlflowClient, MlflowException

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
    model_id = logged_model_id(client, run_id)
    if model_id is None:
        raise MlflowException(f"run {run_id} logged no model (tracking.log_model=false?)")
    _ensure_registered_model(client, name, description)
    mv = _version_for(client, name, model_id, run_id, {k: str(v) for k, v in tags.items()})
    client.set_registered_model_alias(name, alias, mv.version)
    return mv


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
    import sweep.train.backend  # noqa: F401 - TensorFlow quietly, before Keras loads

    # isort: split
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fetch(uri, location, "MLmodel", folder, MAX_MLMODEL_BYTES, model_uri)
        fetch(uri, location, keras_member(folder, model_uri), folder, MAX_KERAS_BYTES, model_uri)
        path = keras_file(folder, model_uri)
        check_archive(path, model_uri)
        return keras.saving.load_model(path, safe_mode=True)


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
