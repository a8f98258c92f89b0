"""The study's best model in the MLflow model registry, under the alias `champion`.

A sweep registers its best trial's logged model as a version of `tracking.registered_model` and
points the alias at it (unless the alias holds another study's better model on the same
objective), so `models:/<name>@champion` always names the best without knowing run or model ids;
`predict` loads it with Keras's safe_mode only (see tracking/models.py) and shows it at work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sweep.config.space import objectives
from sweep.config.stores import Store
from sweep.core import console
from sweep.core.errors import EXIT_OK, ConfigError, first_line
from sweep.core.secrets import printable
from sweep.tracking import MlflowException, alias_tags, load_alias, register

ALIAS = "champion"
DESCRIPTION = "Best model of a sweep (see the version's tags for its study and objective)."
DEFAULT_X = tuple(float(x) for x in range(-6, 7))


def register_champion(cfg: Any, summary: dict[str, Any]) -> Any:
    """Called after a sweep's summary: register its best trial, or say why not. Never raises."""
    name = cfg.tracking.get("registered_model") if cfg.tracking.enabled else None
    robust = summary.get("champion") or {}  # search.champion=robust: the best mean over seeds
    run_id = robust.get("run_id") or summary.get("best_run_id")
    if not name or not run_id:
        return None
    tags = {
        "study": summary["study"],
        "trial": robust.get("trial", summary["best_trial"]),
        "objective": summary["objective"],
        summary["objective"]: robust.get(f"{summary['objective']}_mean", summary["best_value"]),
        "run_id": run_id,
        "chosen_by": f"mean over {robust['n_seeds']} seeds" if robust else "best trial",
    }
    current = alias_tags(cfg.tracking.uri, name, ALIAS)
    if keeps_champion(current, summary, dict(objectives(cfg))[summary["objective"]]):
        console.say(
            f"models:/{name}@{ALIAS} stays on study {current['study']!r}'s model: its "
            f"{summary['objective']} {current[summary['objective']]} beats this study's "
            f"{summary['best_value']}"
        )
        return None
    try:
        mv = register(cfg.tracking.uri, name, ALIAS, run_id, tags, DESCRIPTION)
    except MlflowException as exc:
        console.say(f"warning: best model not registered: {str(exc).splitlines()[0]}")
        return None
    console.say(f"registered models:/{name}@{ALIAS} = version {mv.version} (trial {tags['trial']})")
    return mv


def register_front(cfg: Any, summary: dict[str, Any]) -> list[str]:
    """Each member of a multi-objective study's Pareto front, as alias `pareto-<trial>`."""
    name = cfg.tracking.get("registered_model") if cfg.tracking.enabled else None
    aliases = []
    for member in summary.get("pareto_front") or [] if name else []:
        if not member["run_id"]:
            continue
        alias = f"pareto-{member['trial']}"
        values = {k: v for k, v in member.items() if k not in ("params", "run_id")}
        try:
            register(cfg.tracking.uri, name, alias, member["run_id"], values, DESCRIPTION)
        except MlflowException as exc:
            console.say(f"warning: trial {member['trial']} not registered: {first_line(exc)}")
            continue
        aliases.append(alias)
    if aliases:
        console.say(f"registered the Pareto front as models:/{name}@{{{','.join(aliases)}}}")
    return aliases


def keeps_champion(current: dict[str, str] | None, summary: dict[str, Any], direction: str) -> bool:
    """A champion of ANOTHER study that is better on the same objective is not replaced."""
    objective = summary["objective"]
    if not current or current.get("study") == summary["study"]:
        return False
    try:
        theirs, ours = float(current[objective]), float(summary["best_value"])
    except (KeyError, TypeError, ValueError):  # another objective, or no value recorded
        return False
    return theirs < ours if direction == "minimize" else theirs > ours


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


def _number(name: str, text: str | None) -> str:
    try:
        return console.fmt_metric(name, float(text))
    except (TypeError, ValueError):
        return "?"


def predict_command(
    store: Store,
    model: str = "sine-mlp",
    alias: str = ALIAS,
    x: list[float] | None = None,
    csv: str | None = None,
) -> int:
    """`python -m sweep predict`: the champion's predictions beside sin(x), or for a CSV's rows."""
    try:
        loaded, mv = load_alias(store.uri, model, alias)
    except MlflowException as exc:
        raise ConfigError(
            f"models:/{model}@{alias}: {first_line(exc)} "
            "(a sweep registers its best model; run `make sweep` or `make report`)"
        ) from exc
    objective = mv.tags.get("objective", "val_mse")
    console.say(
        printable(
            f"models:/{model}@{alias} = version {mv.version} "
            f"(study {mv.tags.get('study', '?')}, trial {mv.tags.get('trial', '?')}, "
            f"recorded {objective} {_number(objective, mv.tags.get(objective))})"
        )
    )
    if csv is not None:
        console.say(csv_predictions(store, mv.run_id, loaded, csv))
        return EXIT_OK
    xs = one_input_rows(loaded, x, f"models:/{model}@{alias}")
    console.say(prediction_table(xs, predict(loaded, xs)))
    return EXIT_OK


def one_input_rows(model: Any, x: list[float] | None, name: str) -> np.ndarray:
    """`--x` (or -6..6) as rows of one input each; one line naming the model's input shape when
    it takes more (Keras would raise a 30-line ValueError about incompatible shapes)."""
    shape = tuple(model.inputs[0].shape)
    width = input_width(model)
    if width != 1:  # an 8x8x1 image's last axis is 1 too: the row's size is what counts
        given = f"--x gives {len(x)} values" if x else "without --x, predict gives -6..6"
        raise ConfigError(
            f"{given}, one input per row, but {name} takes {width} inputs per row "
            f"(input shape {shape}); pass its rows with --csv FILE"
        )
    return np.asarray(x or DEFAULT_X, dtype=np.float64)


def input_width(model: Any) -> int:
    """Values in one example: 1 for the tutorial, 64 for an 8x8x1 image, 32 for a window."""
    return int(np.prod([int(d) for d in model.inputs[0].shape[1:]]))


def as_model_inputs(x: np.ndarray, model: Any, source: str) -> np.ndarray:
    """Flat rows [n, width] reshaped (row-major) to the model's input shape, e.g. [n, 8, 8, 1];
    one line when a row holds another number of values."""
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    width = input_width(model)
    if x.shape[1] != width:
        told = f" (input shape {shape}, flattened row-major)" if len(shape) > 1 else ""
        raise ConfigError(f"{source}: {x.shape[1]} input columns; the model takes {width}{told}")
    return x.reshape(len(x), *shape)


def csv_predictions(store: Store, run_id: str, model: Any, path: str) -> str:
    """Each CSV row's prediction, in the data's own units: the run's scaling undone around it."""
    import json

    import yaml

    from sweep.tracking import Reader
    from sweep.train.data import csv_columns, csv_layout

    reader = Reader(store.uri)
    run = reader.run(run_id)
    data = yaml.safe_load(reader.artifact_text(run, "config.yaml"))["data"]
    scaled = "scaling.json" in reader.artifact_names(run)
    scaling = json.loads(reader.artifact_text(run, "scaling.json")) if scaled else {}
    file, header, rows, features, targets = csv_layout(
        path, data.get("features"), data.get("targets"), "--csv"
    )
    missing = [c for c in features if c not in header]
    if missing:
        raise ConfigError(f"--csv {path}: no column {missing[0]!r}; the model reads {features}")
    x = as_model_inputs(csv_columns(file, header, rows, features), model, f"--csv {path}")
    return predicted_rows(model, x, data.get("task"), scaling, targets)


def predicted_rows(
    model: Any, x: np.ndarray, task: str | None, scaling: dict[str, Any], targets: list[str]
) -> str:
    """The table `predict --csv` prints for inputs in the model's shape and the data's units:
    scaled as the run's training split was (per feature, pixel or channel), outputs unscaled."""
    if scaling:
        x = (x - np.asarray(scaling["x_mean"])) / np.asarray(scaling["x_std"])
    out = np.asarray(model(x.astype(np.float32), training=False))
    if task == "classification":
        lines = ["row  class  probability"]
        probs = np.exp(out - out.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        lines += [f"{i:>3d}  {p.argmax():>5d}  {p.max():.3f}" for i, p in enumerate(probs)]
        return "\n".join(lines)
    if "y_mean" in scaling:
        out = out * np.asarray(scaling["y_std"]) + np.asarray(scaling["y_mean"])
    columns = targets or [f"y{k}" for k in range(out.shape[1])]
    lines = ["row  " + "  ".join(f"{c:>12s}" for c in columns)]
    lines += [f"{i:>3d}  " + "  ".join(f"{v:12.5g}" for v in row) for i, row in enumerate(out)]
    return "\n".join(lines)
