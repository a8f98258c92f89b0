"""`python -m sweep report`: one self-contained HTML page that compares a study's trials.

What the MLflow UI cannot show on one page: the best trial against the tutorial's baseline
(trial 0), the optimisation history, parameter importances, parallel coordinates (each on the
study's objective, its best by its direction), for the sine tutorial both models' predictions a
little beyond the training interval (loaded back from MLflow), for any other problem the plots its
best trial logged (a classifier's confusion matrix and misclassified images, a sequence model's
forecast against the actual values), and every trial with its state.
Images are embedded as base64 and there is no script or external link, so the file opens offline.
It is written under `<paths.store>/reports/` and logged to the study's parent run as
`report.html`; the study's best model is (re)registered as `champion` on the way.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import numpy as np
import optuna
from markupsafe import Markup
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from sweep.config.records import moved_target
from sweep.config.space import objectives
from sweep.core import console
from sweep.core.errors import EXIT_OK, ConfigError, first_line
from sweep.core.secrets import mask_url
from sweep.study.pareto import front
from sweep.study.registry import predict, register_champion
from sweep.study.study import PARENT_ATTR, RUN_ATTR, load_existing
from sweep.study.summary import fixed_config, history_plot
from sweep.tracking import Reader, check_reachable, load_run_model
from sweep.train import plots

SECTIONS = (
    ("best", "Best trial against the baseline"),
    ("history", "Optimisation history"),
    ("importances", "Parameter importances"),
    ("parallel", "Parallel coordinates"),
    ("predictions", "Predictions on sin(x)"),
    ("plots", "The best trial's plots"),
    ("pareto", "Pareto front"),
    ("trials", "All trials"),
)
SINE = "sweep.train.data.sine"
# What a best trial of another problem logged (train/plots.py's problem_pngs), in this order.
PROBLEM_PLOTS = (
    "plots/confusion.png",
    "plots/misclassified.png",
    "plots/prediction.png",
    "plots/forecast.png",
    "plots/loss.png",
)
CONFIG_KEYS = ("optimizer._target_", "trainer.epochs", "trainer.batch_size", "seed")


@dataclass
class TrialRow:
    """One trial as the report shows it: Optuna's outcome and its MLflow run's numbers."""

    trial: FrozenTrial
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    objective: str = "val_mse"  # the study's (first) objective, as it names it

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def baseline(self) -> bool:
        return bool(self.trial.user_attrs.get("baseline"))

    @property
    def n_params(self) -> int | None:
        return int(self.params["n_params"]) if "n_params" in self.params else None

    def metric(self, key: str) -> float | None:
        """A complete trial's objective as Optuna holds it; anything else as its run logged it
        (a pruned trial's Optuna value is its last validation loss, whatever the objective)."""
        done = self.trial.state == TrialState.COMPLETE and self.trial.values is not None
        if key == self.objective and done and len(self.trial.values) == 1:
            return self.trial.values[0]
        return self.metrics.get(key)


# --------------------------------------------------------------------------- data


def trial_rows(study: optuna.Study, reader: Reader) -> list[TrialRow]:
    """Every trial with the metrics and params of its MLflow run (when it has one)."""
    rows = []
    objective = (study.metric_names or ["val_mse"])[0]
    for t in study.get_trials(deepcopy=False):
        run = reader.find(t.user_attrs.get(RUN_ATTR))  # a deleted run leaves the trial listed
        row = TrialRow(t, run.info.run_id if run else None, objective=objective)
        if run:
            row.metrics, row.params = dict(run.data.metrics), dict(run.data.params)
        rows.append(row)
    return rows


def pick(
    rows: Sequence[TrialRow], maximize: bool = False
) -> tuple[TrialRow | None, TrialRow | None]:
    """The best complete trial (by the first objective) and the baseline (trial 0, or the one
    tagged baseline)."""
    complete = [r for r in rows if r.trial.state == TrialState.COMPLETE]
    best = (max if maximize else min)(complete, key=lambda r: r.trial.values[0], default=None)
    base = next((r for r in rows if r.baseline), None)
    if base is None:
        base = next((r for r in rows if r.number == 0), None)
    return best, base


# --------------------------------------------------------------------------- figures


def png_data_uri(fig: Any) -> str:
    """A figure as an inline PNG, closed afterwards."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plots.close(fig)
    return png_uri(buf.getvalue())


def png_uri(png: bytes) -> str:
    """PNG bytes as an inline image address: the report embeds, it never links."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def history_image(study: optuna.Study) -> str | None:
    fig = history_plot(study)
    return None if fig is None else png_data_uri(fig)


def importance_image(study: optuna.Study, objective: str) -> str | None:
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 3:
        return None
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):
        return None
    return png_data_uri(plots.importance_figure(importances, objective))


def parallel_image(
    rows: Sequence[TrialRow], best: TrialRow | None, base: TrialRow | None, maximize: bool
) -> str | None:
    complete = [r for r in rows if r.trial.state == TrialState.COMPLETE and r.trial.params]
    if len(complete) < 2:
        return None
    # A conditional space's branch params are absent from some trials: draw the shared ones.
    names = sorted(set.intersection(*(set(r.trial.params) for r in complete)))
    columns = {k: [r.trial.params[k] for r in complete] for k in names}
    dists = complete[0].trial.distributions
    logs = [k for k in names if getattr(dists.get(k), "log", False)]
    index = {r.number: i for i, r in enumerate(complete)}
    highlight = {}
    if base is not None and base.number in index:
        highlight[f"baseline (trial {base.number})"] = index[base.number]
    if best is not None and best.number in index:
        highlight[f"best (trial {best.number})"] = index[best.number]
    fig = plots.parallel_coordinates_figure(
        columns,
        [r.trial.values[0] for r in complete],
        logs,
        highlight,
        complete[0].objective,
        maximize,
    )
    return png_data_uri(fig)


def is_sine(study: optuna.Study) -> bool:
    """The tutorial's problem, the one whose truth the report can draw (a study made before it
    recorded its config was sine)."""
    return moved_target(fixed_config(study).get("data", {}).get("_target_", SINE)) == SINE


def predictions_part(
    study: optuna.Study, uri: str, best: TrialRow | None, base: TrialRow | None
) -> list[Block]:
    """The sine models' curves; nothing for other problems, whose runs carry their own plots/
    (predicted against actual, or a confusion matrix) in MLflow."""
    if not is_sine(study):
        return []
    image = prediction_image(uri, best, base)
    return [image_or_note(image, "predictions", "no logged model to load")]


def problem_plots_part(study: optuna.Study, reader: Reader, best: TrialRow | None) -> list[Block]:
    """Another problem's best trial as its run drew it, copied from MLflow: the report cannot draw
    a truth for data it does not know, but the run did (validation split)."""
    run = reader.find(best.run_id) if best and not is_sine(study) else None
    if run is None:
        return []
    figures: list[Block] = []
    for name in PROBLEM_PLOTS:
        try:
            png = reader.artifact_bytes(run, name)
        except ConfigError:  # not drawn for this problem, or tracking.log_plots=false
            continue
        if not png.startswith(b"\x89PNG"):  # a shared store's file, shown only if it is one
            continue
        figures.append(Figure(png_uri(png), f"trial {best.number}: {name}"))
    if not figures:
        return [Text(f"trial {best.number}'s run logged no plots", "note")]
    return [Text(f"Trial {best.number} on the validation split, as its run logged them.")] + figures


def prediction_image(uri: str, best: TrialRow | None, base: TrialRow | None) -> str | None:
    """Best and baseline predictions on sin(x), 10% beyond the training interval each side."""
    ref = best or base
    if ref is None:
        return None
    lo = float(ref.params.get("data.x_min", -5))
    hi = float(ref.params.get("data.x_max", 5))
    margin = 0.1 * (hi - lo)
    x = np.linspace(lo - margin, hi + margin, 1200, dtype=np.float32)
    curves = {}
    for label, row in (("baseline", base), ("best", best)):
        model = load_run_model(uri, row.run_id) if row else None
        if model is not None:
            curves[f"{label} (trial {row.number})"] = predict(model, x)
    if not curves:
        return None
    return png_data_uri(plots.prediction_figure(x, curves, (lo, hi), "prediction vs sin(x)"))


# --------------------------------------------------------------------------- page content
# The page is templates/report.html.j2, autoescaped: this part hands it text, numbers and
# tables, never HTML, so a study name, metric name, param or note from a shared store is shown
# as written and cannot add markup (a `<script>` in `study:metric_names` once reached the page).

PNG_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True)
class Cell:
    text: str
    num: bool = False  # right-aligned


@dataclass(frozen=True)
class Tr:
    cells: list[Cell]
    cls: str = ""  # "best", "baseline" or none


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[Tr]
    kind: ClassVar[str] = "table"


@dataclass(frozen=True)
class Text:
    text: str
    kind: str = "p"  # "p", "note" (grey italics) or "h3"


@dataclass(frozen=True)
class Figure:
    """An inline PNG: the one value the page takes as it is, once checked to be nothing else."""

    uri: str
    alt: str
    kind: ClassVar[str] = "figure"

    def __post_init__(self) -> None:
        if not PNG_URI.fullmatch(self.uri):
            raise ValueError(f"not an inline PNG: {self.uri[:40]!r}")

    @property
    def src(self) -> Markup:
        return Markup(self.uri)


Block = Table | Text | Figure


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3e}"
    return str(value)


def metric_cell(name: str, value: float | None) -> Cell:
    """A metric's value formatted for its kind (accuracy 0.9412, a loss 1.250e-03)."""
    return Cell(console.fmt_metric(name, value), True)


def cell(value: Any) -> Cell:
    """Any other value; numbers right-aligned."""
    if isinstance(value, Cell):
        return value
    return Cell(fmt(value), isinstance(value, int | float) and not isinstance(value, bool))


def table(
    header: Sequence[str], body: Sequence[Sequence[Any]], classes: Sequence[str] = ()
) -> Table:
    """A table of cells: values as `cell` formats them, or cells formatted already."""
    rows = [
        Tr(
            [cell(c) for c in cells],
            classes[i] if i < len(classes) else "",
        )
        for i, cells in enumerate(body)
    ]
    return Table([str(h) for h in header], rows)


def comparison_table(best: TrialRow | None, base: TrialRow | None) -> Table | Text:
    """Config, MSEs, parameter count and training time, baseline and best side by side."""
    cols = [r for r in (base, best) if r is not None]
    if not cols:
        return Text("no trial has finished yet", "note")
    keys = sorted({k for r in cols for k in r.trial.params})
    body: list[list[Any]] = [["trial", *[r.number for r in cols]]]
    body += [[k, *[r.trial.params.get(k) for r in cols]] for k in keys]
    body += [[k, *[r.params.get(k) for r in cols]] for k in CONFIG_KEYS]
    for key in splits_of(cols[0].objective):
        body.append([key, *[metric_cell(key, r.metric(key)) for r in cols]])
    body.append(["parameters", *[r.n_params for r in cols]])
    seconds = [metric_cell("train_seconds", r.metric("train_seconds")) for r in cols]
    body.append(["training time (s)", *seconds])
    body.append(["state", *[r.trial.state.name for r in cols]])
    body.append(["MLflow run", *[r.run_id or "-" for r in cols]])
    header = ["", *[("baseline" if r is base else "best") for r in cols]]
    if best is not None and base is not None and best.number == base.number:
        header = ["", "baseline = best"]
    return table(header, body)


def robust_results(study: optuna.Study, reader: Reader) -> dict[str, Any] | None:
    """What `robust` (or search.champion=robust) logged to the parent run, if it ran."""
    parent = reader.find(study.user_attrs.get(PARENT_ATTR))
    if parent is None or "robust" not in reader.artifact_names(parent):
        return None
    try:
        return json.loads(reader.artifact_text(parent, "robust/seed_robustness.json"))
    except ConfigError:
        return None


def champion_from_table(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The configuration with the best mean over new seeds, as the registry takes it."""
    if not data:
        return None
    from sweep.replay.robust import champion_of

    best = min(data["configurations"], key=lambda c: c["rank_by_mean"])
    return {"by": "robust", **champion_of(best, _robust_objective(data), best["n_seeds"])}


def _robust_objective(data: dict[str, Any]) -> str:
    """The objective a robustness table is about (tables before it was named: val_mse)."""
    return data.get("objective", "val_mse")


def robust_table(data: dict[str, Any] | None) -> list[Block]:
    """The top trials' objective over new seeds (mean +/- std), when `robust` has run."""
    if not data:
        return []
    name = _robust_objective(data)
    body = [
        [
            c["trial"],
            metric_cell(name, c[f"{name}_original"]),
            f"{console.fmt_metric(name, c[f'{name}_mean'])} \u00b1 {fmt(c[f'{name}_std'])}",
            c["n_seeds"],
            c["rank_original"],
            c["rank_by_mean"],
        ]
        for c in sorted(data["configurations"], key=lambda c: c["rank_by_mean"])
    ]
    header = ["trial", f"{name} (study)", f"{name} over new seeds", "seeds", "rank", "rank by mean"]
    classes = ["best"] + [""] * (len(body) - 1)
    heading = Text("Over new seeds (the champion is the best mean)", "h3")
    return [heading, table(header, body, classes)]


def pareto_part(study: optuna.Study, rows: Sequence[TrialRow]) -> list[Block]:
    """A study of several objectives: the front's plot (baseline marked) and its table."""
    if len(study.directions) < 2:
        return []
    names = study.metric_names or [f"objective {i}" for i in range(2)]
    members = front(study)
    complete = [r.trial for r in rows if r.trial.state == TrialState.COMPLETE]
    base = next((t.number for t in complete if t.user_attrs.get("baseline")), None)
    fig = plots.pareto_figure(
        [(t.number, t.values[0], t.values[1]) for t in complete],
        {t.number for t in members},
        base,
        names[:2],
        [d.name.lower() for d in study.directions[:2]],
    )
    keys = sorted({k for t in members for k in t.params})
    body = [
        [
            t.number,
            *[metric_cell(n, v) for n, v in zip(names, t.values, strict=False)],
            *[t.params.get(k) for k in keys],
        ]
        for t in members
    ]
    return [Figure(png_data_uri(fig), "Pareto front"), table(["trial", *names, *keys], body)]


def splits_of(objective: str) -> list[str]:
    """The objective and the same metric on the other splits: val_mse -> test_mse, train_mse."""
    if not objective.startswith("val_"):
        return [objective]
    metric = objective.removeprefix("val_")
    return [objective, f"test_{metric}", f"train_{metric}"]


def verdict(best: TrialRow | None, base: TrialRow | None, maximize: bool = False) -> str:
    """One sentence on best against baseline; empty when either has no value."""
    key = best.objective if best else "val_mse"
    b, v = (best.metric(key) if best else None), (base.metric(key) if base else None)
    if best is None or base is None or b is None or v is None:
        return ""
    if best.number == base.number:
        return f"No trial beat the baseline's configuration on {key}."
    shown, base_shown = console.fmt_metric(key, b), console.fmt_metric(key, v)
    if maximize:
        return f"Trial {best.number} reaches {key} {shown} against the baseline's {base_shown}."
    return (
        f"Trial {best.number} reaches {key} {shown}, "
        f"{v / b:.3g}\u00d7 lower than the baseline's {base_shown}."
    )


def trials_table(rows: Sequence[TrialRow], best: TrialRow | None) -> Table:
    keys = sorted({k for r in rows for k in r.trial.params})
    shown = splits_of(rows[0].objective)[:2] if rows else ["val_mse"]
    header = ["trial", "state", *shown, *keys, "parameters", "seconds", "note"]
    body, classes = [], []
    for r in rows:
        seconds = r.trial.duration.total_seconds() if r.trial.duration else None
        note = r.trial.user_attrs.get("fail_reason", "")
        if r.trial.state == TrialState.PRUNED and r.trial.intermediate_values:
            note = f"pruned after epoch {max(r.trial.intermediate_values)}"
        body.append(
            [
                r.number,
                r.trial.state.name,
                *[metric_cell(k, r.metric(k)) for k in shown],
                *[r.trial.params.get(k) for k in keys],
                r.n_params,
                seconds,
                note,
            ]
        )
        classes.append("best" if best and r.number == best.number else "baseline" * r.baseline)
    return table(header, body, classes)


def image_or_note(uri: str | None, alt: str, note: str) -> Figure | Text:
    return Text(note, "note") if uri is None else Figure(uri, alt)


def best_part(
    best: TrialRow | None, base: TrialRow | None, maximize: bool, robust: dict[str, Any] | None
) -> list[Block]:
    """Baseline and best side by side, the verdict, and the robustness table if `robust` ran."""
    said = verdict(best, base, maximize)
    return [comparison_table(best, base), *([Text(said)] if said else []), *robust_table(robust)]


# --------------------------------------------------------------------------- HTML


def _template_source(name: str) -> str:
    return (resources.files("sweep.serve") / "templates" / name).read_text(encoding="utf-8")


@functools.cache
def _templates() -> jinja2.Environment:
    """Autoescaping on every template; an undefined name is an error, not an empty cell."""
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_source),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def fragment(block: Block) -> str:
    """One block's HTML, as the page shows it."""
    return str(_templates().get_template("blocks.html.j2").module.block(block))


def render(study_name: str, parts: dict[str, list[Block]], meta: str) -> str:
    """The whole page; sections without content (no Pareto front of one objective) left out."""
    return (
        _templates()
        .get_template("report.html.j2")
        .render(
            title=f"Sweep report: study {study_name}",
            meta=meta,
            sections=[(key, heading) for key, heading in SECTIONS if parts.get(key)],
            parts=parts,
        )
    )


def build_report(study: optuna.Study, reader: Reader, storage: str) -> tuple[str, dict]:
    """The report's HTML, and the summary the champion is registered from."""
    rows = trial_rows(study, reader)
    objective = (study.metric_names or ["val_mse"])[0]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    best, base = pick(rows, maximize)
    robust = robust_results(study, reader)
    states = {s.name: sum(r.trial.state == s for r in rows) for s in TrialState}
    meta = (
        f"{len(rows)} trials ({', '.join(f'{n} {k}' for k, n in states.items() if n)}) "
        f"in {mask_url(storage) or ''}; "
        f"written {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )
    parts = {
        "best": best_part(best, base, maximize, robust),
        "history": [
            image_or_note(history_image(study), "optimisation history", "no finished trial")
        ],
        "importances": [
            image_or_note(
                importance_image(study, objective),
                "parameter importances",
                "needs 3 or more complete trials",
            )
        ],
        "parallel": [
            image_or_note(
                parallel_image(rows, best, base, maximize),
                "parallel coordinates",
                "needs 2 complete trials",
            )
        ],
        "predictions": predictions_part(study, reader.uri, best, base),
        "plots": problem_plots_part(study, reader, best),
        "pareto": pareto_part(study, rows),
        "trials": [trials_table(rows, best)],
    }
    summary = {
        "study": study.study_name,
        "best_trial": best.number if best else None,
        "best_value": best.trial.values[0] if best else None,
        "best_run_id": best.run_id if best else None,
        "champion": champion_from_table(robust),
    }
    return render(study.study_name, parts, meta), summary


def report_path(store: Path, study_name: str) -> Path:
    """<store>/reports/<study>.html, never outside it (study names come from a shared storage)."""
    reports = store / "reports"
    out = (reports / f"{study_name}.html").resolve()
    if out.parent != reports.resolve():
        raise ConfigError(f"study name {study_name!r} would write the report outside {reports}")
    return out


def report_command(cfg: DictConfig, overrides: Sequence[str]) -> int:
    """Write the report, log it to the study's parent run, register the best model."""
    if not cfg.tracking.enabled:
        raise ConfigError("the report reads the study's MLflow runs; it needs tracking=mlflow")
    study = load_existing(cfg.search.storage, cfg.search.study_name)
    check_reachable(cfg.tracking.uri)
    reader = Reader(cfg.tracking.uri)
    page, summary = build_report(study, reader, cfg.search.storage)
    if cfg.search.get("champion") != "robust":  # `make robust` alone informs, does not elect
        summary["champion"] = None
    out = report_path(Path(cfg.paths.store), study.study_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    parent_id = study.user_attrs.get(PARENT_ATTR)
    if parent_id:
        try:
            reader.open_run(parent_id).log_text(page, "report.html")
        except Exception as exc:  # the file is written; a missing parent run is only a warning
            console.say(f"warning: report not logged to run {parent_id}: {first_line(exc)}")
    register_champion(cfg, {**summary, "objective": objectives(cfg)[0][0]})
    console.say(f"report: {out}")
    return EXIT_OK
