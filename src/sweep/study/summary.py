"""The sweep's summary on its parent run: best trial, history, importances, the champion."""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.config.checks import TASK_LOSSES
from sweep.core import console
from sweep.study.budget import STOPPED_ATTR
from sweep.study.pareto import front, front_rows
from sweep.study.pruning import LOSSES_ATTR
from sweep.study.registry import register_champion, register_front
from sweep.study.storage import storage_answers
from sweep.study.study import FINISHED, RUN_ATTR, Sweep, best_trial, counts
from sweep.train import plots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LEARNING_CURVES = "plots/learning_curves.png"  # on the parent run: every trial's loss by epoch


def summarize(sweep: Sweep, record: bool = True) -> dict[str, Any]:
    """Best trial and params, history and importance plots on the parent run; close it if done.

    `record=False` only reads the study (a full disk would take no more files, or the tracking
    server does not answer).
    """
    study = sweep.study
    best = best_trial(study)
    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    summary = {
        "study": study.study_name,
        "n_trials": sweep.cfg.search.n_trials,
        "states": {k: v for k, v in states.items() if v},
        "objective": sweep.objective,
        "best_trial": best.number if best else None,
        "best_value": best.values[0] if best else None,
        "best_params": best.params if best else None,
        "best_run_id": best.user_attrs.get(RUN_ATTR) if best else None,
        "stopped_by": study.user_attrs.get(STOPPED_ATTR),
    }
    names = [name for name, _ in sweep.objectives]
    if len(names) > 1:
        summary["objectives"] = dict(sweep.objectives)
        summary["pareto_front"] = front_rows(study, names, RUN_ATTR)
    if sweep.parent_run_id is None or not record:
        return summary
    parent = sweep.tracker.open_run(sweep.parent_run_id)
    parent.log_json(summary, "summary.json")
    tags = {"best_trial": summary["best_trial"], "best_run_id": summary["best_run_id"] or ""}
    tags.update({f"best.{k}": v for k, v in (summary["best_params"] or {}).items()})
    if summary["stopped_by"]:
        tags["sweep.stopped_by"] = summary["stopped_by"]
    parent.set_tags(tags)
    if best:
        parent.log_metrics(
            {
                f"best_{summary['objective']}": best.values[0],
                "n_finished": states["COMPLETE"] + states["PRUNED"],
            },
            step=len(trials),
        )
        parent.flush()
    _summary_plots(parent, study)
    if len(names) > 1:
        _pareto_plot(parent, study, sweep.objectives)
    return summary


def finished(sweep: Sweep, summary: dict[str, Any]) -> bool:
    """The study reached its trials (or a budget stopped it) and no trial is still running."""
    done = counts(sweep.study)[0]  # not its slots: a retry not queued yet is not running
    running = sweep.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return bool(done >= sweep.cfg.search.n_trials or summary["stopped_by"]) and not running


def conclude(
    sweep: Sweep, summary: dict[str, Any], champion: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Register the champion (`champion`, else the best trial) and the Pareto front; close the
    parent run once the study is finished. The champion is chosen by the caller (`api.sweep`)."""
    if sweep.parent_run_id is None:
        return summary
    if champion is not None:
        summary = {**summary, "champion": champion}
        sweep.tracker.open_run(sweep.parent_run_id).log_json(summary, "summary.json")
    register_champion(sweep.cfg, summary)
    register_front(sweep.cfg, summary)
    if finished(sweep, summary):
        sweep.tracker.open_run(sweep.parent_run_id).end("FINISHED")
    return summary


def fixed_config(study: optuna.Study) -> dict[str, Any]:
    """The config every trial shares, as the study recorded it when created (empty before)."""
    fixed = study.user_attrs.get("fixed_config")
    return fixed if isinstance(fixed, dict) else {}


def trained_loss(fixed: dict[str, Any]) -> str:
    """The loss the trials trained on, from the study's record (plain reads: a record on a
    shared store is data, never resolved); null means the task's default, as in `loss_name`."""
    trainer, data = fixed.get("trainer"), fixed.get("data")
    loss = trainer.get("loss") if isinstance(trainer, dict) else None
    task = str(data.get("task")) if isinstance(data, dict) else "regression"
    return str(loss or TASK_LOSSES.get(task, TASK_LOSSES["regression"])[0])


def history_plot(study: optuna.Study) -> Figure | None:
    """Each finished trial on the first objective, and the best so far by its direction: the
    parent run's plots/optimization_history.png and the report's history."""
    objective = (study.metric_names or ["val_mse"])[0]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    points = history_points(trials, objective, trained_loss(fixed_config(study)))
    if not points:
        return None
    return plots.history_figure(*zip(*points, strict=True), objective, maximize)


def history_points(
    trials: list[FrozenTrial], objective: str, loss: str
) -> list[tuple[int, float, str]]:
    """(number, value, state) of each finished trial on the objective's scale.

    A pruned trial's value is its last reported validation loss; it shares the objective's
    scale only when the objective is that loss (val_mse trained on mse), so under another
    objective (val_accuracy, a cross-entropy loss) a pruned trial has no point to draw.
    """
    comparable = objective == f"val_{loss}"
    points = []
    for t in trials:
        if t.state == TrialState.COMPLETE and t.values is not None:
            points.append((t.number, t.values[0], t.state.name))
        elif t.state == TrialState.PRUNED and comparable and t.intermediate_values:
            points.append((t.number, t.intermediate_values[max(t.intermediate_values)], "PRUNED"))
    return points


def _summary_plots(parent: Any, study: optuna.Study) -> None:
    finished = [
        t
        for t in study.get_trials(deepcopy=False, states=FINISHED)
        if t.values is not None or t.intermediate_values
    ]
    if not finished:
        return
    fig = history_plot(study)
    if fig is not None:
        parent.log_figure(fig, "plots/optimization_history.png")
        plots.close(fig)
    _learning_curves(parent, study, finished)
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 3:
        try:
            with warnings.catch_warnings():  # "low target values": the first objective's own
                warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")
                importances = optuna.importance.get_param_importances(
                    study, target=lambda t: t.values[0]
                )
        except (RuntimeError, ValueError):
            return
        parent.log_json(importances, "param_importances.json")
        fig = plots.importance_figure(importances, (study.metric_names or ["val_mse"])[0])
        parent.log_figure(fig, "plots/param_importances.png")
        plots.close(fig)


def _learning_curves(parent: Any, study: optuna.Study, finished: list[FrozenTrial]) -> None:
    """All finished trials' per-epoch validation losses on one chart, on the parent run."""
    curves = []
    for t in finished:
        by_epoch = t.intermediate_values or {
            int(k): v for k, v in t.user_attrs.get(LOSSES_ATTR, {}).items()
        }
        epochs = sorted(by_epoch)
        curves.append((t.number, t.state.name, epochs, [by_epoch[e] for e in epochs]))
    best = best_trial(study)
    fig = plots.learning_curves_figure(curves, best.number if best else None)
    parent.log_figure(fig, LEARNING_CURVES)
    plots.close(fig)


def _pareto_plot(parent: Any, study: optuna.Study, objectives: list[tuple[str, str]]) -> None:
    """The first two objectives of every complete trial, the front joined, the baseline marked."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return
    on_front = {t.number for t in front(study)}
    base = next((t.number for t in complete if t.user_attrs.get("baseline")), None)
    names, directions = zip(*objectives[:2], strict=True)
    fig = plots.pareto_figure(
        [(t.number, t.values[0], t.values[1]) for t in complete], on_front, base, names, directions
    )
    parent.log_figure(fig, "plots/pareto_front.png")
    plots.close(fig)


def stopped(sweep: Sweep, why: str, close_parent: bool, record: bool = True) -> str:
    """Where an unfinished study stands and how to continue it; its owner marks the parent.

    A store that does not answer now (often why it stopped) is left alone rather than waited
    for again: the next start reads the study, and records the summary and closes the parent.
    `record=False`: nothing is written (a full disk would take no more files).
    """
    again = "run the same command again to continue the study"
    if not storage_answers(sweep.cfg.search.storage):
        return f"{why}: the study's storage does not answer; {again} once it does"
    reachable = sweep.tracker.reachable()
    record = record and reachable
    summary = summarize(sweep, record=record)
    text = summary_text(conclude(sweep, summary) if record else summary)
    if close_parent and sweep.parent_run_id and reachable:
        sweep.tracker.terminate(sweep.parent_run_id, "KILLED", why)
    done, _ = counts(sweep.study)
    return f"{text}\n{why} at {done}/{sweep.cfg.search.n_trials} finished trials; {again}"


def summary_text(summary: dict[str, Any]) -> str:
    """The closing lines of a sweep: where it stands and the best trial."""
    lines = [f"study {summary['study']}: {json.dumps(summary['states'])}"]
    if summary.get("stopped_by"):
        lines.append(f"stopped early by its budget: {summary['stopped_by']}")
    champion = summary.get("champion")
    if champion:
        name = champion.get("objective", "val_mse")
        lines.append(
            f"champion (best mean over {champion['n_seeds']} new seeds): trial "
            f"{champion['trial']}  {name}={console.fmt_metric(name, champion[f'{name}_mean'])} "
            f"+/- {champion[f'{name}_std']:.1e}"
        )
    if summary["best_trial"] is not None:
        lines.append(
            f"best: trial {summary['best_trial']}  "
            f"{summary['objective']}="
            f"{console.fmt_metric(summary['objective'], summary['best_value'])}  "
            f"{console.fmt_params(summary['best_params'])}  run {summary['best_run_id'] or '-'}"
        )
    return "\n".join(lines)
