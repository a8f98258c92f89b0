"""Train/validation/test arrays for every problem the config can name. numpy only: no Keras.

Each data set is a function returning a `Dataset`, named in conf/data/*.yaml by `_target_`:
`sine` (the tutorial), `from_csv` (a file of the user's), `diabetes`, `digits` and
`digits_images` (shipped inside scikit-learn's wheel: nothing is downloaded), `sine_sequence`
(windows of a noisy sine), `from_npy` (memory-mapped files, streamed: bigger than memory). A
user's own function (trusted by `trusted_modules`) may return a `Dataset` (see `from_arrays`) or
a plain `(x, y)` pair. Inputs keep their shape: a table is
[n, features], images [n, height, width, channels], sequences [n, steps, channels].
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import mmap
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sweep.core.errors import ConfigError

TASKS = ("regression", "classification")


@dataclass(frozen=True)
class Split:
    """Inputs as float32 [n, *input_shape]; targets float32 [n, outputs], or int32 labels [n]."""

    x: np.ndarray
    y: np.ndarray

    def digest(self) -> str:
        """Content hash, recorded with each run so a rerun can prove it saw the same data; a
        file-backed split is hashed at its ends (`edges_digest`), never read whole."""
        h = hashlib.sha256()
        for a in (self.x, self.y):
            if isinstance(a, np.memmap):
                h.update(edges_digest(a).encode())
            else:
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Dataset:
    """Three splits and what the model, loss and plots need to know about them."""

    train: Split
    val: Split
    test: Split
    task: str = "regression"
    n_classes: int = 0
    # Where the arrays came from, for the replay record (e.g. a CSV's path and file digest).
    source: dict[str, Any] = field(default_factory=dict)
    # Standardisation fitted on the training split: {"x_mean": [...], "x_std": [...], ...}.
    scaling: dict[str, list[float]] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape, what a builder's `keras.Input(shape=...)` says: (64,), (8, 8, 1)."""
        return tuple(int(d) for d in self.train.x.shape[1:])

    @property
    def input_dim(self) -> int:
        """Values per example: the MLP's input width (the tutorial's records name it)."""
        return math.prod(self.input_shape)

    @property
    def output_dim(self) -> int:
        """Units of the model's last layer: one logit per class, or one per regression target."""
        return self.n_classes if self.task == "classification" else int(self.train.y.shape[1])


# --------------------------------------------------------------------------- the tutorial


def sine(x_min: float, x_max: float, step: float, n_val: int, n_test: int, seed: int) -> Dataset:
    """The tutorial's grid for training; seeded uniform draws from the same interval to evaluate."""
    x = np.arange(x_min, x_max, step).astype(np.float32)
    rng = np.random.default_rng(seed)
    x_val = rng.uniform(x_min, x_max, n_val).astype(np.float32)
    x_test = rng.uniform(x_min, x_max, n_test).astype(np.float32)
    return Dataset(train=_sine_split(x), val=_sine_split(x_val), test=_sine_split(x_test))


make_dataset = sine  # the name tests and the benchmark have always used


def _sine_split(x: np.ndarray) -> Split:
    x = x.reshape(-1, 1)
    return Split(x=x, y=np.sin(x).astype(np.float32))


# --------------------------------------------------------------------------- arrays -> Dataset


def from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    task: str = "regression",
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    standardize: bool | str = True,
    source: dict[str, Any] | None = None,
    shuffle: bool = True,
) -> Dataset:
    """A seeded shuffle split of (x, y) (in order with `shuffle=False`: a time series' windows
    overlap, so shuffling would put the validation set's values inside training windows);
    standardisation (`standardize_axes`) is fitted on the training split only."""
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not one of: {', '.join(TASKS)}")
    x, y = _as_inputs(x), _as_targets(y, task)
    n = len(x)
    if len(y) != n:
        raise ConfigError(f"{n} inputs but {len(y)} targets")
    n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    axes = standardize_axes(standardize, x.ndim)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    parts = np.split(order, [n - n_val - n_test, n - n_test])
    splits = [Split(x[p], y[p]) for p in parts]
    scaling: dict[str, list[float]] = {}
    if axes is not None:
        splits, scaling = _standardized(splits, task, axes)
    n_classes = int(y.max()) + 1 if task == "classification" else 0
    return Dataset(*splits, task=task, n_classes=n_classes, source=source or {}, scaling=scaling)


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Rows for validation and test; one line when they leave no training or validation rows."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1) or n - n_val - n_test < 1 or not n_val:
        raise ConfigError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no "
            f"training or validation rows out of {n}"
        )
    return n_val, n_test


def standardize_axes(standardize: bool | str, ndim: int) -> tuple[int, ...] | None:
    """The axes the mean and std are taken over, or None for no standardisation.

    true or "feature": each input value by its own (a table's columns, each pixel); "channel": one
    mean and std per last-axis channel (images, sequences); false or "off": none.
    """
    if not (isinstance(standardize, bool) or standardize in ("feature", "channel", "off")):
        raise ConfigError(
            f"data.standardize={standardize!r} is not one of: true, feature, channel, off, false"
        )
    if standardize in (False, "off"):
        return None
    if standardize == "channel" and ndim > 2:
        return tuple(range(ndim - 1))
    return (0,)


def _as_inputs(x: Any) -> np.ndarray:
    """Float32 with each example's own shape; a flat vector of scalars becomes one column."""
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(len(x), 1) if x.ndim == 1 else x


def _as_targets(y: Any, task: str) -> np.ndarray:
    """Float32 [n, outputs] for regression; int32 class labels 0..k-1 for classification."""
    y = np.asarray(y)
    if task == "regression":
        y = y.astype(np.float32)
        return y.reshape(len(y), -1)
    labels = y.reshape(-1)
    if labels.size != len(y) or not np.all(np.equal(np.mod(labels, 1), 0)) or labels.min() < 0:
        raise ConfigError("classification targets must be one column of labels 0, 1, 2, ...")
    return labels.astype(np.int32)


def _standardized(
    splits: list[Split], task: str, axes: tuple[int, ...] = (0,)
) -> tuple[list[Split], dict[str, list[float]]]:
    """Inputs (over `axes`) and regression targets scaled by the training split's mean and std."""
    train = splits[0]
    x_mean, x_std = train.x.mean(axis=axes), _std(train.x, axes)
    scaling = {"x_mean": x_mean.tolist(), "x_std": x_std.tolist()}
    y_mean = y_std = None
    if task == "regression":
        y_mean, y_std = train.y.mean(axis=0), _std(train.y)
        scaling |= {"y_mean": y_mean.tolist(), "y_std": y_std.tolist()}
    out = []
    for s in splits:
        x = ((s.x - x_mean) / x_std).astype(np.float32)
        y = s.y if y_mean is None else ((s.y - y_mean) / y_std).astype(np.float32)
        out.append(Split(x, y))
    return out, scaling


def _std(a: np.ndarray, axes: tuple[int, ...] = (0,)) -> np.ndarray:
    std = a.std(axis=axes)
    return np.where(std > 0, std, 1.0).astype(np.float32)  # a constant column stays as it is


# --------------------------------------------------------------------------- a user's CSV


def from_csv(
    path: str,
    features: list[str] | None,
    targets: list[str] | str,
    task: str = "regression",
    **split: Any,
) -> Dataset:
    """A CSV file with a header row; `features: null` means every column that is not a target."""
    file, header, rows, features, targets = csv_layout(path, features, targets, "path")
    missing = [c for c in [*features, *targets] if c not in header]
    if missing:
        raise ConfigError(
            f"{file.name} has no column {missing[0]!r}; its columns: {', '.join(header)}"
        )
    x = csv_columns(file, header, rows, features)
    y = csv_columns(file, header, rows, targets)
    source = {"file": str(file.resolve()), "file_sha256": file_digest(file)}
    return from_arrays(x, y, task, source=source, **split)


def csv_layout(
    path: str, features: list[str] | None, targets: list[str] | str | None, key: str
) -> tuple[Path, list[str], list[list[str]], list[str], list[str]]:
    """A CSV's file, header, rows, and its feature and target column names (features default to
    every column that is not a target); one line when the file is missing."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{key}={path!r}: no such file")
    header, rows = read_csv_table(file)
    targets = [targets] if isinstance(targets, str) else list(targets or [])
    features = list(features) if features else [c for c in header if c not in targets]
    return file, header, rows, features, targets


def read_csv_table(file: Path) -> tuple[list[str], list[list[str]]]:
    import csv

    with file.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        rows = [r for r in reader if r]
    if not header or not rows:
        raise ConfigError(f"{file.name} needs a header row and at least one data row")
    return header, rows


def csv_columns(
    file: Path, header: list[str], rows: list[list[str]], names: list[str]
) -> np.ndarray:
    """The named columns as float32; the first cell that is not a number is the error."""
    index = [header.index(n) for n in names]
    out = np.empty((len(rows), len(index)), dtype=np.float32)
    for r, row in enumerate(rows):
        for c, i in enumerate(index):
            try:
                out[r, c] = float(row[i])
            except (ValueError, IndexError):
                cell = row[i] if i < len(row) else ""
                raise ConfigError(
                    f"{file.name} line {r + 2}, column {names[c]!r}: {cell!r} is not a number"
                ) from None
    return out


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes: a rerun can tell the CSV it trained on changed since."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- scikit-learn's own


def diabetes(**split: Any) -> Dataset:
    """442 patients x 10 features -> disease progression after one year (regression)."""
    return _bundled("load_diabetes", "regression", **split)


def digits(**split: Any) -> Dataset:
    """1,797 8x8 images of handwritten digits, 64 pixels -> one of 10 classes."""
    return _bundled("load_digits", "classification", **split)


def digits_images(**split: Any) -> Dataset:
    """The same 1,797 digits as 8x8x1 images (pixels 0-16), for a convolutional model."""
    return _bundled("load_digits", "classification", (8, 8, 1), **split)


def _bundled(loader: str, task: str, shape: tuple[int, ...] = (-1,), **split: Any) -> Dataset:
    """A data set that ships inside scikit-learn's wheel (nothing is downloaded), split."""
    import sklearn.datasets

    x, y = getattr(sklearn.datasets, loader)(return_X_y=True)
    return from_arrays(x.reshape(len(x), *shape), y, task, **split)


# --------------------------------------------------------------------------- a time series


def sine_sequence(
    n_points: int = 3000,
    period: float = 50.0,
    noise: float = 0.1,
    window: int = 32,
    horizon: int = 1,
    seed: int = 0,
    **split: Any,
) -> Dataset:
    """A noisy sine, cut into windows: `window` past values [window, 1] -> the next `horizon`.

    Split in time order (train, then validation, then test): the windows overlap, so a shuffled
    split would show the model the values it is validated on.
    """
    if window < 1 or horizon < 1 or n_points < window + horizon + 3:
        raise ConfigError(
            f"data: n_points={n_points} cannot hold windows of {window} + horizon {horizon}"
        )
    t = np.arange(n_points, dtype=np.float64)
    rng = np.random.default_rng(seed)
    series = np.sin(2 * np.pi * t / period) + noise * rng.normal(size=n_points)
    n = n_points - window - horizon + 1
    index = np.arange(n)[:, None]
    x = series[index + np.arange(window)][..., None]
    y = series[index + window + np.arange(horizon)]
    split.setdefault("standardize", "channel")
    return from_arrays(x, y, "regression", seed=seed, shuffle=False, **split)


# --------------------------------------------------------------------------- bigger than memory

EDGE_BYTES = 1 << 20  # hashed at each end of a file or split: see `file_fingerprint`
REGION_BYTES = 8 << 20  # of a file, mapped at once while a random batch is gathered


def from_npy(
    x: str,
    y: str | None = None,
    task: str = "regression",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    standardize: bool | str = False,
) -> Dataset:
    """Inputs memory-mapped from `x` (an .npy file, or an uncompressed .npz holding `x` and `y`),
    split in file order (shuffle the rows when you write them), never read whole: training
    streams them batch by batch (`read_rows`). The targets, one row of outputs per example, are
    small beside the inputs and are loaded.

    Standardisation is off: applied batch by batch it would not reach the places that take the
    validation inputs as they are (the plots, the logged model's example); scale the files.
    """
    if standardize not in (False, "off"):
        raise ConfigError(
            f"data.standardize={standardize!r}: data=npy streams the files as they are; "
            "standardise them when you write them and set data.standardize=false"
        )
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not one of: {', '.join(TASKS)}")
    xs, ys, source = mapped_arrays(x, y)
    n = len(xs)
    if xs.ndim < 2 or len(ys) != n:
        raise ConfigError(
            f"data.x has shape {xs.shape} and data.y {ys.shape}: expected [n, ...] and [n, ...]"
        )
    targets = _as_targets(ys, task)
    n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    cuts = (0, n - n_val - n_test, n - n_test, n)
    splits = [Split(xs[a:b], targets[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    n_classes = int(targets.max()) + 1 if task == "classification" else 0
    return Dataset(*splits, task=task, n_classes=n_classes, source=source)


def mapped_arrays(x: str, y: str | None) -> tuple[np.memmap, np.memmap, dict[str, Any]]:
    """Both arrays memory-mapped, and each file's fingerprint for the replay record."""
    path = _existing(x, "data.x")
    if path.suffix == ".npz":
        if y is not None:
            raise ConfigError("data.y: an .npz holds both arrays (x and y); set data.y=null")
        xs, ys = npz_member(path, "x"), npz_member(path, "y")
        return xs, ys, {"files": {"npz": file_fingerprint(path)}}
    if y is None:
        raise ConfigError(f"data.y: {path.name} holds the inputs only; name the targets' .npy")
    ypath = _existing(y, "data.y")
    xs, ys = _load_npy(path, "data.x"), _load_npy(ypath, "data.y")
    return xs, ys, {"files": {"x": file_fingerprint(path), "y": file_fingerprint(ypath)}}


def _existing(path: str, key: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{key}={path!r}: no such file")
    return file


def _load_npy(path: Path, key: str) -> np.memmap:
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ConfigError(f"{key}={str(path)!r} is not a numeric .npy file ({exc})") from None
    if not isinstance(mapped, np.memmap):
        raise ConfigError(f"{key}={str(path)!r} is not an .npy file")
    return mapped


def npz_member(path: Path, name: str) -> np.memmap:
    """Array `name` of an uncompressed .npz, memory-mapped where its .npy bytes start in the zip
    (np.load reads an .npz member whole, whatever mmap_mode says)."""
    with zipfile.ZipFile(path) as z:
        try:
            info = z.getinfo(f"{name}.npy")
        except KeyError:
            raise ConfigError(
                f"data.x: {path.name} has no array {name!r}; it holds "
                f"{', '.join(n.removesuffix('.npy') for n in z.namelist())}"
            ) from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise ConfigError(
            f"data.x: {path.name} is compressed, which cannot be memory-mapped; "
            "write it with np.savez, not np.savez_compressed"
        )
    with path.open("rb") as f:
        f.seek(info.header_offset + 26)  # the local header's name and extra field lengths
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        f.seek(info.header_offset + 30 + name_len + extra_len)
        major, _ = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(f)
        offset = f.tell()
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


def file_fingerprint(path: Path) -> dict[str, Any]:
    """A file's size and the sha256 of its first and last MB (an .npy header, with shape and
    dtype, is in the first). Hashing the whole file would read all of it in every trial and
    every check: seconds per GB, for a file bigger than memory. The ends catch truncation,
    appends, a new shape or dtype and a rewrite with other rows; an edit only in the middle
    escapes, which the record's split digests share."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            f.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            h.update(f.read())
    return {"file": str(path.resolve()), "bytes": size, "edges_sha256": h.hexdigest()[:16]}


def edges_digest(a: np.ndarray) -> str:
    """A file-backed array's shape, dtype and first and last MB of rows, hashed (see above)."""
    rows = max(1, EDGE_BYTES // max(1, a[:1].nbytes))
    h = hashlib.sha256(f"{a.shape}{a.dtype}".encode())
    h.update(np.ascontiguousarray(a[:rows]).tobytes())
    h.update(np.ascontiguousarray(a[-rows:]).tobytes())
    release_pages(a)
    return h.hexdigest()[:16]


def streamed(split: Split) -> bool:
    """Whether a split's inputs stay in their file, to be read a batch at a time."""
    return isinstance(split.x, np.memmap)


def read_rows(split: Split, index: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
    """The examples at `index` as float32 inputs (a copy) and their targets, the file's pages
    released as they are read (`release_pages`): resident memory holds a chunk, not the file."""
    if isinstance(index, slice):
        x = np.asarray(split.x[index], dtype=np.float32)
        release_pages(split.x)
        return x, split.y[index]
    return _gathered(split.x, index), split.y[index]


def _gathered(x: np.memmap, index: np.ndarray) -> np.ndarray:
    """Rows at a random `index`, read one REGION_BYTES stretch of the file at a time, in order.

    A random batch touches pages all over the file, and each touch maps its neighbours too
    (the kernel's fault-around): gathered at once, one chunk of rows mapped most of a 200 MB
    file (+222 MB peak RSS, measured). Stretch by stretch, the pages mapped at once stay few.
    """
    order = np.argsort(index, kind="stable")
    rows = index[order]
    per_region = max(1, REGION_BYTES // max(1, x[:1].nbytes))
    cuts = np.searchsorted(rows, np.arange(0, len(x) + per_region, per_region))
    out = np.empty((len(index), *x.shape[1:]), dtype=np.float32)
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        if a < b:
            out[order[a:b]] = x[rows[a:b]]
            release_pages(x)
    return out


def chunks(n: int, rows: int) -> list[slice]:
    """Consecutive slices of at most `rows` rows over n examples: evaluation, chunk by chunk."""
    return [slice(a, min(a + rows, n)) for a in range(0, n, rows)]


def release_pages(x: np.ndarray) -> None:
    """Unmap the pages a memory-mapped array's reads brought in: a file-backed page counts in
    the process's RSS while mapped, so an epoch over a file would otherwise end with the whole
    file resident. The kernel's page cache keeps them; the next read maps them back cheaply."""
    mapped = getattr(x, "_mmap", None)
    if mapped is not None:
        mapped.madvise(mmap.MADV_DONTNEED)


# --------------------------------------------------------------------------- any of the above


def dataset_for(cfg: Any) -> Dataset:
    """The configured data set: `_target_` built behind the allowlist, `task` checked against it.

    `data.task` belongs to the config (it picks the loss and the objective before any data is
    read); it is passed on only to a function that takes a `task` argument, like `from_csv`.
    `data.name` names the study and the experiment, and is never passed on.
    """
    import inspect

    from omegaconf import OmegaConf

    from sweep.core.objects import build, check_target, trusted_prefixes

    trusted = trusted_prefixes(cfg)
    spec = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    task = spec.pop("task", "regression")
    spec.pop("name", None)
    kwargs = {}
    with contextlib.suppress(Exception):  # a target that cannot be found fails in build
        function = _located(check_target("data._target_", spec.get("_target_"), trusted))
        if "task" in inspect.signature(function).parameters:
            kwargs["task"] = task
    return as_dataset(build(spec, "data", trusted, **kwargs), task)


def _located(target: str) -> Any:
    from hydra.utils import get_method

    return get_method(target)


def as_dataset(made: Any, task: str) -> Dataset:
    """What a data function returned, as a Dataset: its own, or an (x, y) pair split with seed 0."""
    if isinstance(made, Dataset):
        if made.task != task:
            raise ConfigError(f"data.task={task!r}, but the data set is a {made.task} problem")
        return made
    if isinstance(made, tuple | list) and len(made) == 2:
        return from_arrays(made[0], made[1], task)
    raise ConfigError(
        f"data: the function returned {type(made).__name__}; expected a sweep.train.data.Dataset "
        "or an (x, y) pair of arrays"
    )
