"""Config checks and helpers that run before TensorFlow or MLflow is imported.

Every user mistake in a config should come back in about a second as one line, so nothing here
imports the heavy libraries.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from omegaconf import DictConfig, OmegaConf

from sweep.errors import ConfigError, first_line
from sweep.keys import leaves
from sweep.objects import build, check_targets

ACTIVATIONS = ("tanh", "relu", "sigmoid", "elu", "gelu", "selu", "swish", "softplus", "linear")
# Losses the training loop implements, and which task each fits (null picks the first).
TASK_LOSSES = {"regression": ("mse", "mae", "huber"), "classification": ("crossentropy",)}
LOSSES = (*TASK_LOSSES["regression"], *TASK_LOSSES["classification"])
MLP = "sweep.model.build_mlp"
EXAMPLES = {
    "data": "sweep.data.sine",
    "model": "sweep.model.build_mlp",
    "optimizer": "keras.optimizers.SGD",
    "search.sampler": "optuna.samplers.TPESampler",
    "search.pruner": "optuna.pruners.MedianPruner",
}
MAX_POINTS = 10_000_000  # a grid beyond this is a typo (or a hostile record), not an experiment
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which `postgresql+psycopg` names explicitly.
POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg2", "postgresql+psycopg")
STORAGE_SCHEMES = ("sqlite", *POSTGRES_SCHEMES, "mysql", "mysql+pymysql")
TRACKING_SCHEMES = ("sqlite", "http", "https", *POSTGRES_SCHEMES, "file")


def prepare(cfg: DictConfig) -> DictConfig:
    """Return a resolved, validated copy with every local path made absolute."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    try:
        store = cfg.paths.store
    except Exception as exc:  # an interpolation in the store's own path (fuzzed)
        raise ConfigError(f"cannot resolve paths.store: {first_line(exc)}") from exc
    if store is None or str(store).strip() == "":
        raise ConfigError("paths.store must name a folder, e.g. paths.store=mlruns")
    cfg.paths.store = str(Path(str(store)).expanduser().resolve())
    try:
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except Exception as exc:  # omegaconf's interpolation errors carry the key in their text
        raise ConfigError(f"cannot resolve config: {first_line(exc)}") from exc
    validate(resolved)
    lr = OmegaConf.select(resolved, "optimizer.learning_rate")
    if isinstance(lr, int):  # Keras refuses an int learning rate (`optimizer.learning_rate=1`)
        resolved.optimizer.learning_rate = float(lr)
    resolved.trainer.loss = loss_name(resolved)  # logged as chosen: `mse` for the tutorial
    return resolved


def loss_name(cfg: DictConfig) -> str:
    """trainer.loss, or the task's default when it is null: mse, or cross-entropy."""
    task = OmegaConf.select(cfg, "data.task", default="regression")
    return OmegaConf.select(cfg, "trainer.loss") or TASK_LOSSES[task][0]


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first offending key, what it holds and what is allowed."""
    check_targets(cfg)
    for key in ("data", "model", "optimizer", "search.sampler", "search.pruner"):
        _spec(cfg, key)
    check_values(cfg)
    check_data(cfg)
    for key in ("search.study_name", "tracking.registered_model"):
        safe_name(key, OmegaConf.select(cfg, key), optional=key.startswith("tracking"))
    check_url("search.storage", cfg.search.storage, STORAGE_SCHEMES)
    check_search_plan(cfg)
    if cfg.tracking.enabled:
        check_url("tracking.uri", cfg.tracking.uri, TRACKING_SCHEMES)
    from sweep.search import objectives, parse_space  # Hydra's grammar; light, no TensorFlow

    check_space_values(cfg, parse_space(cfg.search.space, cfg))
    objectives(cfg)
    with warnings.catch_warnings():  # Optuna's "experimental" notes: said once, by the study
        warnings.simplefilter("ignore")
        for key in ("search.sampler", "search.pruner"):  # cheap to build, so built to check
            build(OmegaConf.select(cfg, key), key)


def check_values(cfg: DictConfig) -> None:
    """The checks of single values: cheap, so each corner of the search space gets them too."""
    if cfg.model._target_ == MLP:
        _choice(cfg, "model.activation", ACTIVATIONS)
        for key in ("model.depth", "model.width"):
            positive_int(cfg, key)
    for key in ("trainer.epochs", "trainer.batch_size", "search.n_trials", "search.jobs"):
        positive_int(cfg, key)
    if "learning_rate" in cfg.optimizer:
        positive_number(cfg, "optimizer.learning_rate")
    check_plain_keys(cfg)


def check_space_values(cfg: DictConfig, space: dict[str, Any]) -> None:
    """Refuse a space that can sample a value its key refuses (depth 1.5, a NaN rate), up front."""
    for key, dist in space.items():
        if isinstance(OmegaConf.select(cfg, key), DictConfig):
            continue  # a config-group choice (optimizer: choice(sgd, adam)): its options are files
        corners = getattr(dist, "choices", None) or (dist.low, dist.high)
        for value in corners:
            trial = OmegaConf.create(OmegaConf.to_container(cfg))
            OmegaConf.update(trial, key, value, force_add=True)
            try:
                check_values(trial)
            except ConfigError as exc:
                raise ConfigError(f"search.space.{key} can sample {value!r}: {exc}") from exc


# Keys only used later (by TensorFlow, the study loop, MLflow), where a bad value would fail
# mid-sweep: checked here with the rest. Each: what it must be, and the test of it.
FLAGS = (
    "trainer.deterministic",
    "trainer.jit_compile",
    "tracking.enabled",
    "tracking.log_model",
    "tracking.log_plots",
    "search.enqueue_baseline",
)
NAMES = ("data.name", "search.study_name", "tracking.experiment")


def check_plain_keys(cfg: DictConfig) -> None:
    """Flags, names, seeds and the study loop's numbers: refused now, not mid-sweep (fuzzed)."""
    for key in FLAGS:
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
    for key in NAMES:
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key} must be a non-empty name, got {value!r}")
    for key in ("seed", "data.seed"):
        value = OmegaConf.select(cfg, key)
        if value is not None and (not _is_int(value) or not 0 <= value < 2**32):
            raise ConfigError(f"{key} must be an integer from 0 to 2**32-1, got {value!r}")
    for key in ("search.heartbeat_interval", "search.grace_period"):
        positive_int(cfg, key)
    failures = OmegaConf.select(cfg, "search.max_failed_trials")
    if not _is_int(failures) or failures < 0:
        raise ConfigError(
            f"search.max_failed_trials must be 0 (no limit) or more, got {failures!r}"
        )
    if OmegaConf.select(cfg, "trainer.threads") is not None:
        positive_int(cfg, "trainer.threads")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_search_plan(cfg: DictConfig) -> None:
    """Budgets, warm start and champion keys: refused here rather than after a first trial."""
    if OmegaConf.select(cfg, "search.timeout") is not None:
        positive_number(cfg, "search.timeout")
    if OmegaConf.select(cfg, "search.patience") is not None:
        positive_int(cfg, "search.patience")
    from sweep.search import objectives

    objectives(cfg)
    champion = OmegaConf.select(cfg, "search.champion", default="best")
    if champion not in ("best", "robust"):
        raise ConfigError(f"search.champion={champion!r} is not one of: best, robust")
    if champion == "robust":
        positive_int(cfg, "search.robust.top")
        positive_int(cfg, "search.robust.seeds")
        if not cfg.tracking.enabled:
            raise ConfigError(
                "search.champion=robust retrains the top trials from their MLflow records; "
                "it needs tracking (not tracking=none)"
            )


def _spec(cfg: DictConfig, key: str) -> DictConfig:
    """A node the code builds: a mapping with a `_target_` (the allowlist already checked it)."""
    spec = OmegaConf.select(cfg, key)
    if not isinstance(spec, DictConfig) or not isinstance(spec.get("_target_"), str):
        raise ConfigError(f"{key} needs a _target_, e.g. {key}._target_={EXAMPLES[key]}")
    return spec


def check_data(cfg: DictConfig) -> None:
    """The data's task, loss and size, checked by building it once (numpy; no TensorFlow)."""
    task = _choice(cfg, "data.task", tuple(TASK_LOSSES))
    loss = OmegaConf.select(cfg, "trainer.loss")
    if loss is not None and loss not in TASK_LOSSES[task]:
        raise ConfigError(
            f"trainer.loss={loss!r} does not fit a {task} problem; use one of: "
            f"{', '.join(TASK_LOSSES[task])} (or null for {TASK_LOSSES[task][0]})"
        )
    if cfg.data._target_ == "sweep.data.sine":  # the tutorial's keys, checked by name
        for key in ("data.n_val", "data.n_test"):
            positive_int(cfg, key)
        train_size(cfg)
    from sweep.data import dataset_for

    n_train = len(dataset_for(cfg).train.x)
    if cfg.trainer.batch_size > n_train:
        raise ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size} is larger than the training set "
            f"({n_train} points); use at most {n_train}"
        )


def train_size(cfg: DictConfig) -> int:
    """Number of grid points numpy's arange will make for the sine data config."""
    d = cfg.data
    for key in ("x_min", "x_max", "step"):
        if not isinstance(d[key], int | float) or isinstance(d[key], bool):
            raise ConfigError(f"data.{key} must be a number, got {d[key]!r}")
    if d.step <= 0 or d.x_max <= d.x_min:
        raise ConfigError("data needs x_min < x_max and step > 0")
    n = int(-(-(d.x_max - d.x_min) // d.step))
    if n > MAX_POINTS or max(d.get("n_val", 0), d.get("n_test", 0)) > MAX_POINTS:
        raise ConfigError(f"data asks for more than {MAX_POINTS:,} points (data.step={d.step})")
    return n


def positive_int(cfg: DictConfig, key: str) -> int:
    """Fetch an integer key that must be >= 1."""
    return positive(cfg, key, integer=True)


def positive_number(cfg: DictConfig, key: str) -> float:
    """Fetch a numeric key that must be > 0 and finite."""
    return float(positive(cfg, key))


def positive(cfg: DictConfig, key: str, integer: bool = False) -> int | float:
    """A key's value that must be a finite number above 0 (with `integer`, a whole one)."""
    value = OmegaConf.select(cfg, key)
    number = isinstance(value, int if integer else int | float) and not isinstance(value, bool)
    if not (number and 0 < value < float("inf")):
        what = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{key} must be {what}, got {value!r}")
    return value


def safe_name(key: str, value: Any, optional: bool = False) -> None:
    """A study or model name names a file (the report) and sits in MLflow filters: no quotes,
    no slashes, no `..`, nothing a terminal would interpret."""
    if optional and value is None:
        return
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        raise ConfigError(
            f"{key}={value!r} must be letters, digits, '.', '_' or '-' (at most 100), "
            "starting with a letter or digit"
        )


def _choice(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> str:
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(allowed)}")
    return value


def check_url(key: str, url: Any, schemes: tuple[str, ...]) -> None:
    """Reject URLs whose scheme we cannot use, before anything is created with them."""
    if not isinstance(url, str) or "://" not in url:
        shown = f"***@{url.rsplit('@', 1)[1]}" if isinstance(url, str) and "@" in url else url
        raise ConfigError(f"{key}={shown!r} is not a URL; expected e.g. sqlite:///path/to/file.db")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in schemes:
        raise ConfigError(f"{key}: scheme {scheme!r} is not one of: {', '.join(schemes)}")
    if scheme == "sqlite":
        path = sqlite_path(url)
        if not path:
            raise ConfigError(f"{key}={url!r} names no database file")
        writable_dir(key, Path(path).parent)
    elif scheme != "file":
        if any(ch.isspace() for ch in url):  # a folder may hold a space, a network URL may not
            raise ConfigError(
                f"{key}={mask_url(url)!r} holds whitespace; percent-encode it (a space as %20) "
                "or keep the password in PGPASSWORD or ~/.pgpass"
            )
        parts = urlsplit(url)
        if url.split("://", 1)[1].count("@") > parts.netloc.count("@"):
            raise ConfigError(
                f"{key}={mask_url(url)!r}: its password holds / ? or #; percent-encode them "
                "(/ as %2F, ? as %3F, # as %23) or keep it in PGPASSWORD or ~/.pgpass"
            )
        if not parts.hostname:
            raise ConfigError(f"{key}={mask_url(url)!r} names no host")
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise ConfigError(f"{key}={mask_url(url)!r} has a bad port") from exc


def sqlite_path(url: str) -> str:
    """The file path in a sqlite:/// URL (relative, or absolute with four slashes)."""
    rest = url.split("://", 1)[1]
    return rest[1:].split("?", 1)[0] if rest.startswith("/") else ""


def writable_dir(key: str, folder: Path) -> None:
    """Fail now, not mid-sweep, when a store's folder could not be created or written.

    Nothing is made here: a command that is refused later (or only reads) leaves no folder.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}: cannot create {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "folder" if existing == folder else "parent folder"
        raise ConfigError(f"{key}: {what} {existing} is not writable")


# A query parameter that carries a secret (`?password=`, libpq's `sslpassword`, `token=`), also
# in Hydra's escaped form (`password\=`, as `-m` writes overrides). Its value ends at the next
# parameter, or before quotes and brackets that close the text around the URL (a YAML or shell
# quote), so masking never breaks the record it runs over; an escaped character (`\ `, `\,`)
# belongs to the value.
SECRET_QUERY = re.compile(
    r"(?i)(?P<key>[?&;][a-z_]*(?:password|passwd|pwd|secret|token)\\?=)"
    r"(?P<value>(?:\\.|[^&#\n])*?)(?=(?:\\?['\"]|[,;)\]}])*(?:[&#\n]|$))"
)
SEPARATOR = re.compile(r"\\?://")  # Hydra's multirun escapes `:` in overrides (`postgresql\://`)


def _password_span(rest: str) -> tuple[int, int] | None:
    """Where the password sits in a URL's text after `://`: from the first `:` to the LAST `@`
    of the userinfo, so a password holding `:`, `@`, `/` or a quote is found whole."""
    at = rest.rfind("@")
    if at > 0 and ":" in rest[:at]:
        return rest.index(":") + 1, at
    return None


def url_password(url: str | None) -> str | None:
    """The password of a URL as `mask_url` sees it (None without one)."""
    sep = SEPARATOR.search(url or "")
    span = _password_span(url[sep.end() :]) if sep else None
    return url[sep.end() :][span[0] : span[1]] if span else None


def mask_url(url: str | None) -> str | None:
    r"""The one masking of a URL: its password, and any secret query parameter, become ***.

    The password runs from the first `:` to the LAST `@` (SQLAlchemy's own `make_url` stops at
    the first `@`); Hydra's escaped form (`postgresql\://u\:pw@h\:5432`) is masked the same way.
    """
    sep = SEPARATOR.search(url or "")
    if sep is None:
        return url
    head, rest = url[: sep.end()], url[sep.end() :]
    if span := _password_span(rest):
        rest = rest[: span[0]] + "***" + rest[span[1] :]
    return head + SECRET_QUERY.sub(lambda m: m["key"] + "***", rest)


URL = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*\\?://"
    # A password holding raw whitespace (check_url refuses it, but Hydra writes its files first):
    # from `user:` to the next `@` on the line, never into another URL (`host:5432` is a port).
    r"(?:[^\s/@:\\]*\\?:(?!\d+(?:[\s/?#]|$))(?=[^@\n]*?\s)(?:(?!\\?://)[^\n@])+@)?"
    r"(?:\\\s|\S)+"  # the rest, with Hydra's escaped whitespace (`\ `)
)
# A value that is one URL, or one `key=URL` override: with raw whitespace it is masked whole.
KEY_URL = re.compile(r"(?s)(?P<key>[\w.+~/@-]+=)?(?P<url>[A-Za-z][A-Za-z0-9+.-]*\\?://.*)")


def mask_text(value: Any) -> str:
    """Text with every URL masked by `mask_url`: configs, overrides, commands, tracebacks, tags."""
    return URL.sub(lambda m: mask_url(m.group()), str(value))


def split_password(url: str) -> tuple[str, str | None]:
    """A PostgreSQL URL without its password, and the password: a child process gets the URL on
    its command line (any local user reads it in `ps`) and the password in PGPASSWORD."""
    parts = urlsplit(url)
    if parts.scheme not in (*POSTGRES_SCHEMES, "postgres") or parts.password is None:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}")), unquote(parts.password)


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value: Any) -> str:
    """One line for the terminal: masked, and with no control characters (a run name or tag on
    a shared server, written by anyone, could otherwise carry escape sequences)."""
    return CONTROL.sub("?", mask_text(value))


def mask_data(data: Any) -> Any:
    """A record (dicts, lists, strings) with every string masked, before it is serialised."""
    if isinstance(data, dict):
        return {k: mask_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [mask_data(v) for v in data]
    if not isinstance(data, str):
        return data
    whole = KEY_URL.fullmatch(data)
    if whole and any(ch.isspace() for ch in data):
        return (whole["key"] or "") + mask_url(whole["url"])
    return mask_text(data)


@dataclass(frozen=True)
class Store:
    """The tracking store a command that does not compose conf/ reads and writes."""

    uri: str
    folder: Path

    @property
    def artifact_root(self) -> str:
        return str(self.folder / "artifacts")


def store_location(store: str | Path | None = None, tracking_uri: str | None = None) -> Store:
    """--tracking-uri, else --store DIR, else MLFLOW_TRACKING_URI, else sqlite under ./mlruns."""
    folder = Path(store or "mlruns").expanduser().resolve()
    uri = tracking_uri
    if uri is None and store is None:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
    return Store(uri or f"sqlite:///{folder}/mlflow.db", folder)


def existing_store(store: str | Path | None = None, tracking_uri: str | None = None) -> Store:
    """store_location, refused in one line when it names a local store that was never made."""
    found = store_location(store, tracking_uri)
    if found.uri.startswith("sqlite:") and not Path(sqlite_path(found.uri)).is_file():
        raise ConfigError(
            f"no MLflow store at {sqlite_path(found.uri) or found.uri}; run `make sweep` first, "
            "or pass --store DIR or --tracking-uri URI"
        )
    check_url("--tracking-uri", found.uri, TRACKING_SCHEMES)
    return found


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, str]:
    """Dotted key -> string value, the shape MLflow params want; URLs come out masked."""
    return {key: mask_text(value) for key, value in leaves(cfg, prefix).items()}


# Records logged before objects were named by `_target_` (optimizer.name/lr, search.*.name):
# old name -> (target, the old builder's keys it passed on). The old `lr` is Keras's learning_rate.
OLD_OPTIMIZERS = {
    "sgd": ("keras.optimizers.SGD", ("lr", "momentum")),
    "adam": ("keras.optimizers.Adam", ("lr",)),
    "rmsprop": ("keras.optimizers.RMSprop", ("lr", "momentum")),
}
OLD_SAMPLERS = {
    "tpe": ("optuna.samplers.TPESampler", ("seed", "n_startup_trials")),
    "random": ("optuna.samplers.RandomSampler", ("seed",)),
    "cmaes": ("optuna.samplers.CmaEsSampler", ("seed",)),
    "qmc": ("optuna.samplers.QMCSampler", ("seed",)),
}
OLD_PRUNERS = {
    "median": ("optuna.pruners.MedianPruner", ("n_startup_trials", "n_warmup_steps")),
    "percentile": (
        "optuna.pruners.PercentilePruner",
        ("percentile", "n_startup_trials", "n_warmup_steps"),
    ),
    "hyperband": ("optuna.pruners.HyperbandPruner", ()),
    "successive_halving": ("optuna.pruners.SuccessiveHalvingPruner", ()),
    "none": ("optuna.pruners.NopPruner", ()),
}


def upgrade_record(cfg: DictConfig) -> DictConfig:
    """A logged config in today's keys, so runs recorded before `_target_` can still be rerun."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    if "name" in out.optimizer:
        if "lr" not in out.optimizer:
            raise ConfigError("the record's optimizer has a name but no lr")
        out.optimizer = _upgraded(out.optimizer, "optimizer", OLD_OPTIMIZERS)
    if "_target_" not in out.model:
        out.model = {"_target_": MLP, **out.model}
    if "_target_" not in out.data:  # recorded before data sets were named: the tutorial's
        out.data = {"_target_": "sweep.data.sine", "name": "sine", "task": "regression", **out.data}
    for key, table in (("sampler", OLD_SAMPLERS), ("pruner", OLD_PRUNERS)):
        if OmegaConf.select(out, f"search.{key}.name") is not None:
            out.search[key] = _upgraded(out.search[key], f"search.{key}", table)
    space = OmegaConf.select(out, "search.space.optimizer")
    if space is not None and "lr" in space:
        space.learning_rate = space.pop("lr")
    check_targets(out)  # a record is data too: what it names is held to the same allowlist
    return out


def _upgraded(spec: DictConfig, key: str, table: dict[str, tuple[str, tuple[str, ...]]]) -> dict:
    """An old `name: x` spec as `_target_` plus the kwargs the old builder passed on."""
    if spec.name not in table:
        raise ConfigError(
            f"{key}.name={spec.name!r} in the record is not one of: {', '.join(table)}"
        )
    target, kept = table[spec.name]
    upgraded = {"_target_": target}
    upgraded |= {("learning_rate" if k == "lr" else k): spec[k] for k in kept if k in spec}
    if spec.name in ("hyperband", "successive_halving"):  # what the old builder passed
        upgraded["min_resource"] = max(1, spec.get("n_warmup_steps", 5))
    return upgraded
