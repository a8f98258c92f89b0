"""Matplotlib figures from plain arrays and lists; callers decide where they go (and close them)."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def prediction_figure(
    x: np.ndarray,
    curves: dict[str, np.ndarray],
    train_range: tuple[float, float],
    title: str = "prediction vs truth",
) -> Figure:
    """sin(x) and each model's prediction, with the training interval shaded."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    x = np.asarray(x).ravel()
    truth = np.sin(x)
    top.plot(x, truth, color="black", lw=2.5, alpha=0.35, label="sin(x)")
    for name, pred in curves.items():
        pred = np.asarray(pred).ravel()
        top.plot(x, pred, lw=1.3, label=name)
        bottom.plot(x, pred - truth, lw=1.0, label=name)
    for ax in (top, bottom):
        ax.axvspan(*train_range, color="tab:blue", alpha=0.05)
        ax.grid(alpha=0.3)
    top.set_ylabel("y")
    top.set_title(title)
    top.legend(loc="upper right")
    bottom.axhline(0, color="black", lw=0.8)
    bottom.set_ylabel("error")
    bottom.set_xlabel("x (shaded: training interval)")
    # Fixed margins: tight_layout costs a whole extra draw, and this figure is made every trial.
    fig.subplots_adjust(left=0.09, right=0.98, top=0.94, bottom=0.09, hspace=0.08)
    return fig


def loss_figure(
    train_loss: Sequence[float],
    val_loss: Sequence[float],
    title: str = "loss per epoch",
    ylabel: str = "MSE",
) -> Figure:
    """Training and validation loss per epoch on a log scale, where the slow decline is visible."""
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = np.arange(1, len(train_loss) + 1)
    ax.plot(epochs, train_loss, marker=".", label="train_loss")
    ax.plot(epochs, val_loss, marker=".", label="val_loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.13)  # per trial: see above
    return fig


_trial_figures: dict[tuple, tuple[Figure, Figure]] = {}
_trial_lock = threading.Lock()


def trial_pngs(
    x: np.ndarray,
    pred: np.ndarray,
    train_range: tuple[float, float],
    title: str,
    train_loss: Sequence[float],
    val_loss: Sequence[float],
) -> dict[str, bytes]:
    """PNG bytes of one trial's prediction and loss plots, from figures drawn once per process.

    Making a matplotlib figure costs as much as drawing it, and a sweep draws these two for every
    trial; so the figures are kept, and only their data, limits and title change (half the time).
    """
    x = np.asarray(x).ravel()
    pred = np.asarray(pred).ravel()
    epochs = np.arange(1, len(train_loss) + 1)
    with _trial_lock:
        key = (tuple(train_range),)
        if key not in _trial_figures:
            _trial_figures[key] = (
                prediction_figure(x, {"model": pred}, train_range, title),
                loss_figure(train_loss, val_loss),
            )
        pred_fig, loss_fig = _trial_figures[key]
        top, bottom = pred_fig.axes
        top.lines[0].set_data(x, np.sin(x))
        top.lines[1].set_data(x, pred)
        bottom.lines[0].set_data(x, pred - np.sin(x))
        top.set_title(title)
        loss_ax = loss_fig.axes[0]
        loss_ax.lines[0].set_data(epochs, train_loss)
        loss_ax.lines[1].set_data(epochs, val_loss)
        for ax in (top, bottom, loss_ax):
            ax.relim()
            ax.autoscale_view()
        return {"plots/prediction.png": _png(pred_fig), "plots/loss.png": _png(loss_fig)}


def regression_figure(y: np.ndarray, pred: np.ndarray, title: str = "validation") -> Figure:
    """Predicted against actual (on the diagonal when right) and the residuals, per output."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    y, pred = np.asarray(y).reshape(len(y), -1), np.asarray(pred).reshape(len(pred), -1)
    for k in range(y.shape[1]):
        label = f"output {k}" if y.shape[1] > 1 else None
        left.scatter(y[:, k], pred[:, k], s=10, alpha=0.6, label=label)
        right.scatter(pred[:, k], pred[:, k] - y[:, k], s=10, alpha=0.6, label=label)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    left.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    left.set(xlabel="actual", ylabel="predicted", title=f"predicted vs actual ({title})")
    right.axhline(0, color="black", lw=0.8)
    right.set(xlabel="predicted", ylabel="residual (predicted - actual)", title="residuals")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if y.shape[1] > 1:
            ax.legend()
    fig.tight_layout()
    return fig


def confusion_figure(labels: np.ndarray, logits: np.ndarray, title: str = "validation") -> Figure:
    """Counts of each true class (rows) predicted as each class (columns); accuracy in the title."""
    n = logits.shape[1]
    predicted = np.argmax(logits, axis=1)
    counts = np.zeros((n, n), dtype=int)
    np.add.at(counts, (np.asarray(labels).ravel(), predicted), 1)
    fig, ax = plt.subplots(figsize=(0.45 * n + 3, 0.45 * n + 2.5))
    ax.imshow(counts, cmap="Blues")
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                color = "white" if counts[i, j] > counts.max() / 2 else "black"
                ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion ({title}), accuracy {accuracy:.3f}")
    fig.tight_layout()
    return fig


def misclassified_figure(
    images: np.ndarray, labels: np.ndarray, logits: np.ndarray, most: int = 16
) -> Figure:
    """Up to `most` images the model got wrong, each titled true -> predicted: what the confusion
    matrix counts, seen (a smudged 7, a 1 drawn like a 7)."""
    predicted = np.argmax(logits, axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels).ravel())[:most]
    cols = 8
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong, strict=False):
        ax.imshow(images[i][..., 0] if images.shape[-1] == 1 else images[i], cmap="gray_r")
        ax.set_title(f"{int(labels[i])} -> {predicted[i]}", fontsize=8, color="crimson")
    total = int((predicted != np.asarray(labels).ravel()).sum())
    fig.suptitle(f"misclassified (validation): {len(wrong)} of {total} shown, true -> predicted")
    fig.tight_layout()
    return fig


def forecast_figure(y: np.ndarray, pred: np.ndarray, most: int = 300) -> Figure:
    """The next value predicted against the actual one, along the validation split in time order
    (the sequence data sets split in time): where the forecast lags or flattens is visible."""
    y, pred = np.asarray(y).reshape(len(y), -1), np.asarray(pred).reshape(len(pred), -1)
    n = min(len(y), most)
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(range(n), y[:n, 0], color="black", lw=1.2, label="actual")
    ax.plot(range(n), pred[:n, 0], color="tab:orange", lw=1.2, label="forecast")
    ax.set(xlabel="validation window (time order)", ylabel="next value (standardised)")
    ax.set_title("forecast vs actual (validation)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def problem_pngs(
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    pred: np.ndarray,
    train_loss: Sequence[float],
    val_loss: Sequence[float],
) -> dict[str, bytes]:
    """A run's plots for any problem but the tutorial's: what fits the task and the inputs'
    shape (misclassified images, a sequence's forecast), and the losses."""
    if task == "classification":
        figs = {"plots/confusion.png": confusion_figure(y, pred)}
        if x.ndim == 4:  # images [n, height, width, channels]
            figs["plots/misclassified.png"] = misclassified_figure(x, y, pred)
        ylabel = "cross-entropy"
    else:
        figs = {"plots/prediction.png": regression_figure(y, pred)}
        if x.ndim == 3:  # sequences [n, steps, channels]
            figs["plots/forecast.png"] = forecast_figure(y, pred)
        ylabel = "loss"
    figs["plots/loss.png"] = loss_figure(train_loss, val_loss, ylabel=ylabel)
    out = {path: _png(fig) for path, fig in figs.items()}
    for fig in figs.values():
        close(fig)
    return out


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def history_figure(
    numbers: Sequence[int],
    values: Sequence[float],
    states: Sequence[str],
    metric: str = "val_mse",
    maximize: bool = False,
) -> Figure:
    """Each trial's objective and the best so far (the max when maximising): still improving?"""
    fig, ax = plt.subplots(figsize=(7, 4))
    numbers, values = np.asarray(numbers), np.asarray(values, dtype=float)
    complete = np.array([s == "COMPLETE" for s in states])
    ax.scatter(numbers[complete], values[complete], s=18, label="complete")
    if (~complete).any():
        ax.scatter(
            numbers[~complete], values[~complete], s=18, marker="x", label="pruned (last value)"
        )
    worst = -np.inf if maximize else np.inf
    running = np.fmax if maximize else np.fmin
    best = running.accumulate(np.where(complete, values, worst))
    ax.step(
        numbers,
        np.where(np.isfinite(best), best, np.nan),
        where="post",
        color="tab:red",
        label=f"best so far ({'max' if maximize else 'min'})",
    )
    if _wide(values):
        ax.set_yscale("log")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(f"optimisation history ({_better(maximize)} is better)")
    return _finished(fig, ax)


def _wide(values: Sequence[float]) -> bool:
    """Positive values spanning more than a decade (a loss) read best on a log scale; a score
    such as accuracy (0.4 to 0.95) on a linear one."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return bool(finite.size) and finite.min() > 0 and finite.max() / finite.min() > 10


def _better(maximize: bool) -> str:
    return "higher" if maximize else "lower"


def learning_curves_figure(
    curves: Sequence[tuple[int, str, Sequence[int], Sequence[float]]], best: int | None
) -> Figure:
    """Every trial's validation loss by epoch in one chart: where pruning cut, what converged."""
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {"COMPLETE": "tab:blue", "PRUNED": "tab:orange"}
    for number, state, epochs, losses in curves:
        if number == best:
            continue
        short = "o" if len(epochs) == 1 else None  # pruned at its first epoch: a dot, not a line
        colour = colours.get(state, "tab:gray")
        ax.plot(epochs, losses, color=colour, alpha=0.35, lw=1, marker=short)
    for state, colour in colours.items():  # one legend entry per state, not per trial
        ax.plot([], [], color=colour, label=state.lower())
    for number, _, epochs, losses in curves:
        if number == best:
            ax.plot(epochs, losses, color="tab:red", lw=2, label=f"best (trial {number})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation loss")
    ax.set_title(f"learning curves of {len(curves)} trials")
    return _finished(fig, ax)


def pareto_figure(
    points: Sequence[tuple[int, float, float]],
    on_front: set[int],
    baseline: int | None,
    names: Sequence[str],
    directions: Sequence[str] = ("minimize", "minimize"),
) -> Figure:
    """Two objectives of every trial (numbered), the Pareto front joined, the baseline marked;
    each axis says which way is better."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rest = [p for p in points if p[0] not in on_front]
    best = sorted((p for p in points if p[0] in on_front), key=lambda p: p[1])
    if rest:
        ax.scatter([p[1] for p in rest], [p[2] for p in rest], s=18, color="0.6", label="trial")
    ax.plot([p[1] for p in best], [p[2] for p in best], "o-", color="tab:red", label="Pareto front")
    for number, x, y in best:
        ax.annotate(f"#{number}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    base = next((p for p in points if p[0] == baseline), None)
    if base is not None:
        ax.scatter(
            [base[1]],
            [base[2]],
            s=120,
            marker="*",
            color="tab:blue",
            zorder=3,
            label=f"baseline (trial {base[0]})",
        )
    if _wide([p[1] for p in points]):
        ax.set_xscale("log")
    if _wide([p[2] for p in points]):
        ax.set_yscale("log")
    ax.set_xlabel(f"{names[0]} ({_better(directions[0] == 'maximize')} is better)")
    ax.set_ylabel(f"{names[1]} ({_better(directions[1] == 'maximize')} is better)")
    ax.set_title("Pareto front")
    return _finished(fig, ax)


def importance_figure(importances: dict[str, float], metric: str = "val_mse") -> Figure:
    """Horizontal bars of each swept parameter's importance for the objective, largest on top."""
    fig, ax = plt.subplots(figsize=(7, 0.6 * max(len(importances), 2) + 1.2))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance for {metric}")
    ax.set_title("parameter importances")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def seed_robustness_figure(
    labels: Sequence[str],
    values: Sequence[Sequence[float]],
    originals: Sequence[float],
    ylabel: str = "validation MSE",
    log: bool = True,
) -> Figure:
    """The objective of each configuration over new seeds (box and points) beside the study's;
    a loss on a log scale, a score (`log=False`, e.g. accuracy) on a linear one."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(labels) + 2), 4))
    finite = [[v for v in vs if np.isfinite(v)] for vs in values]
    positions = np.arange(1, len(labels) + 1)
    ax.boxplot(
        finite,
        positions=positions,
        widths=0.5,
        showfliers=False,
        showmeans=True,
        meanprops={"marker": "_", "markersize": 18, "markeredgecolor": "black"},
    )
    jitter = np.random.default_rng(0)
    for pos, vs in zip(positions, finite, strict=True):
        ax.scatter(
            pos + jitter.uniform(-0.12, 0.12, len(vs)), vs, s=16, alpha=0.7, color="tab:blue"
        )
    ax.scatter(positions, originals, marker="D", color="tab:red", zorder=3, label="study's seed")
    ax.set_xticks(positions, labels)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title("seed robustness of the best trials (points: new seeds, bar: mean)")
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def _axis_positions(values: Sequence, log: bool) -> tuple[np.ndarray, list[str]]:
    """Values mapped to [0, 1] on one parallel axis, and labels for its bottom and top."""
    if any(isinstance(v, str) for v in values):
        cats = sorted({str(v) for v in values})
        pos = np.array([cats.index(str(v)) for v in values], dtype=float)
        return pos / max(len(cats) - 1, 1), cats
    raw = np.asarray(values, dtype=float)
    t = np.log10(raw) if log else raw
    lo, hi = float(np.min(t)), float(np.max(t))
    span = hi - lo or 1.0
    return (t - lo) / span, [f"{raw.min():.3g}", f"{raw.max():.3g}"]


def parallel_coordinates_figure(
    columns: dict[str, Sequence],
    values: Sequence[float],
    log_axes: Sequence[str] = (),
    highlight: dict[str, int] | None = None,
    metric: str = "val_mse",
    maximize: bool = False,
) -> Figure:
    """One line per trial across its parameters to its objective; darker is better either way."""
    names = [*columns, metric]
    cols = [*columns.values(), list(values)]
    logs = [n in log_axes for n in columns] + [_wide(values)]
    placed = [_axis_positions(c, lg) for c, lg in zip(cols, logs, strict=True)]
    grid = np.array([p for p, _ in placed]).T
    worse = 1 - grid[:, -1] if maximize else grid[:, -1]  # 0 for the best trial, 1 the worst
    fig, ax = plt.subplots(figsize=(1.9 * len(names) + 1, 4.5))
    cmap = plt.get_cmap("viridis")
    for row, w in sorted(zip(grid, worse, strict=True), key=lambda rw: -rw[1]):
        ax.plot(range(len(names)), row, color=cmap(w), alpha=0.7, lw=1.2)  # the best on top
    for label, i in (highlight or {}).items():
        ax.plot(range(len(names)), grid[i], lw=3, label=label)
    for i, (_, labels) in enumerate(placed):
        ax.axvline(i, color="black", lw=0.8)
        if len(labels) == 2 and not isinstance(cols[i][0], str):
            ax.text(i, -0.06, labels[0], ha="center", va="top", fontsize=8)
            ax.text(i, 1.06, labels[1], ha="center", va="bottom", fontsize=8)
        else:
            for j, lab in enumerate(labels):
                ax.text(i + 0.03, j / max(len(labels) - 1, 1), lab, fontsize=8, va="center")
    ax.set_xticks(
        range(len(names)), [n + (" (log)" if lg else "") for n, lg in zip(names, logs, strict=True)]
    )
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.15)
    dark = "high" if maximize else "low"
    ax.set_title(f"parallel coordinates (colour: {metric}, dark = {dark})")  # dark: the best
    if highlight:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _finished(fig: Figure, ax: Axes) -> Figure:
    """A summary figure's last touches: a light grid, the legend, a tight layout."""
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Release a figure; a long sweep must not accumulate them."""
    plt.close(fig)
