"""`python -m sweep report`: the HTML page a user opens offline, checked in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweep.serve import report
from sweep.train import plots
from tests.conftest import run_cli
from tests.e2e.test_ui_browser import chromium, screenshot


def test_parallel_coordinates_takes_categorical_and_log_axes():
    fig = plots.parallel_coordinates_figure(
        {
            "model.activation": ["tanh", "elu", "tanh"],
            "optimizer.learning_rate": [0.001, 0.01, 0.1],
        },
        [0.5, 0.01, 0.2],
        log_axes=["optimizer.learning_rate"],
        highlight={"best": 1},
    )
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["model.activation", "optimizer.learning_rate (log)", "val_mse (log)"]
    best_line = fig.axes[0].get_lines()[-1 - 3]  # the highlight, drawn before the 3 axis lines
    assert list(best_line.get_ydata()) == pytest.approx([0.0, 0.5, 0.0])  # elu, mid lr, best
    plots.close(fig)


def test_tables_escape_what_they_show():
    html = report.fragment(report.table(["<b>"], [["<script>alert(1)</script>", 1.5e-5]]))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<td class="num">1.500e-05</td>' in html


def test_report_of_a_missing_study_is_one_line(tmp_path):
    out = run_cli("report", "search.study_name=nope", store=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"error: no study 'nope': no Optuna storage at {tmp_path}/optuna.db"
    )


@pytest.mark.slow
def test_report_renders_every_section_offline(tiny_sweep_store: Path, tmp_path: Path):
    out = run_cli("report", store=tiny_sweep_store)
    assert out.returncode == 0, out.stderr
    path = Path(re.search(r"report: (\S+)", out.stdout).group(1))
    assert path == tiny_sweep_store / "reports" / "sine-mlp.html"
    page = path.read_text()
    assert not re.search(r"<script|<link|src=\"http|url\(", page), "the report must open offline"

    driver = chromium(tmp_path / "profile")
    try:
        driver.get(path.as_uri())
        headings = [h.text for h in driver.find_elements("tag name", "h2")]
        # A study of one objective has no Pareto front section; sine, no run's plots section.
        assert headings == [t for key, t in report.SECTIONS if key not in ("pareto", "plots")]
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)"
        )
        assert len(widths) == 4 and min(widths) > 0, widths  # history, importance, parallel, preds
        for section in ("history", "importances", "parallel", "predictions"):
            assert driver.find_elements("css selector", f"#{section} img"), section
        rows = driver.find_elements("css selector", "#trials tr")[1:]
        states = [r.find_elements("tag name", "td")[1].text for r in rows]
        best_header = [c.text for c in driver.find_elements("css selector", "#best th")]
        driver.set_window_size(1200, driver.execute_script("return document.body.scrollHeight"))
        screenshot(driver, "report.png")
    finally:
        driver.quit()

    client = MlflowClient(f"sqlite:///{tiny_sweep_store}/mlflow.db")
    exp = client.get_experiment_by_name("sine")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get("sweep.kind") == "trial"]
    assert sorted(states) == sorted(r.data.tags["sweep.state"] for r in trials)
    assert best_header[1:] in (["baseline", "best"], ["baseline = best"])
    (parent,) = [r for r in runs if r.data.tags.get("sweep.kind") == "sweep"]
    logged = client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path))
    assert Path(logged).read_text() == page


def test_the_report_follows_the_study_objective_and_direction():
    """digits maximises val_accuracy: the best trial is the highest, the columns are accuracy."""
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.9, 0.7):
        study.add_trial(optuna.trial.create_trial(value=value))
    rows = [report.TrialRow(t, objective="val_accuracy") for t in study.trials]
    best, base = report.pick(rows, maximize=True)
    assert best.trial.values[0] == 0.9 and base.number == 0
    assert report.pick(rows)[0].trial.values[0] == 0.5  # minimising, as for val_mse
    assert report.splits_of("val_accuracy") == ["val_accuracy", "test_accuracy", "train_accuracy"]
    page = report.fragment(report.trials_table(rows, best)) + report.fragment(
        report.comparison_table(best, base)
    )
    assert "val_accuracy" in page and "test_accuracy" in page and "val_mse" not in page
    assert "0.9" in report.verdict(best, base, maximize=True)


# A study per problem, its trials made directly: (overrides, complete values by trial number,
# the pruned trial's reported losses, the best-so-far line expected, the best trial).
PROBLEMS = {
    "classifier": (
        ["data=digits"],
        {0: 0.40, 1: 0.90, 3: 0.70, 4: 0.9412},
        {1: 2.3, 2: 1.9},  # cross-entropy: not on the accuracy axis, so not drawn
        [0.40, 0.90, 0.90, 0.9412],
        4,
    ),
    "regression csv": (
        ["data=csv", "data.targets=[y]"],
        {0: 0.5, 1: 0.02, 3: 0.05, 4: 0.01},
        {1: 0.3, 2: 0.2},  # mse, the objective's own scale: drawn as trial 2
        [0.5, 0.02, 0.02, 0.02, 0.01],
        4,
    ),
    "sine": ([], {0: 0.5, 1: 0.02, 3: 0.05, 4: 0.01}, {1: 0.3}, [0.5, 0.02, 0.02, 0.02, 0.01], 4),
}


# What each problem's trial logs (train/plots.py), in the report's order; a stray file is skipped.
PLOTS_BY_PROBLEM = {
    "classifier": ["plots/confusion.png", "plots/misclassified.png", "plots/loss.png"],
    "regression csv": ["plots/prediction.png", "plots/loss.png"],
    "sine": ["plots/prediction.png", "plots/loss.png"],
}


def run_with_plots(reader, tmp_path: Path, names: list[str]) -> str:
    """A run in reader's store holding a small PNG under each name, and a forecast.png that is
    not a PNG (a shared store's file: skipped)."""
    client = reader.client
    experiment = client.create_experiment(tmp_path.name, artifact_location=str(tmp_path / "art"))
    run_id = client.create_run(experiment).info.run_id
    files = tmp_path / "plots"
    files.mkdir()
    fig = plots.loss_figure([1.0, 0.5], [1.1, 0.6])
    for name in names:
        fig.savefig(files / Path(name).name, format="png")
    plots.close(fig)
    if "plots/forecast.png" not in names:
        (files / "forecast.png").write_text("<script>not a png</script>")
    client.log_artifacts(run_id, str(files), "plots")
    return run_id


@pytest.fixture(scope="module")
def empty_reader(tmp_path_factory: pytest.TempPathFactory):
    """A real, empty MLflow store (making one costs about 6 s: made once)."""
    from sweep.tracking import Reader

    return Reader(f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db")


def problem_study(cfg) -> optuna.Study:
    """An in-memory study as `open_sweep` records it: objectives named, fixed config kept."""
    from sweep.config.space import fingerprint, objectives
    from sweep.study.study import name_objectives

    names, directions = zip(*objectives(cfg), strict=True)
    study = optuna.create_study(directions=list(directions))
    name_objectives(study, names)
    study.set_user_attr("fixed_config", fingerprint(cfg)[1])
    return study


@pytest.mark.parametrize("problem", PROBLEMS)
def test_plots_and_report_follow_the_objective_and_direction(
    problem, compose_cfg, tmp_path, empty_reader
):
    from sweep.config.checks import prepare
    from sweep.study.summary import history_plot

    overrides, values, pruned, best_line, best = PROBLEMS[problem]
    run_id = run_with_plots(empty_reader, tmp_path, PLOTS_BY_PROBLEM[problem])
    csv = tmp_path / "table.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 7},{i * 0.5}\n" for i in range(200)))
    extra = [f"data.path={csv}"] if "data=csv" in overrides else []
    cfg = prepare(compose_cfg(*overrides, *extra))
    study = problem_study(cfg)
    objective, maximize = study.metric_names[0], study.directions[0].name == "MAXIMIZE"
    dist = optuna.distributions.IntDistribution(1, 4)
    for number in range(5):
        state = "COMPLETE" if number in values else "PRUNED"
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState[state],
                value=values.get(number),
                params={"model.depth": number % 4 + 1},
                distributions={"model.depth": dist},
                intermediate_values=pruned if state == "PRUNED" else None,
                user_attrs={"mlflow_run_id": run_id} if number == best else None,
            )
        )

    fig = history_plot(study)  # the parent run's plots/optimization_history.png
    ax = fig.axes[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("best")]
    assert list(line.get_ydata()) == pytest.approx(best_line)
    assert ax.get_ylabel() == objective and ("max" in line.get_label()) == maximize
    assert ax.get_yscale() == ("linear" if maximize else "log")
    plots.close(fig)

    page, summary = report.build_report(study, empty_reader, "memory")
    page = report.PNG_URI.sub("", page)
    assert summary["best_trial"] == best
    assert ("Predictions on sin(x)" in page) == (problem == "sine")
    # Another problem's truth is its run's own plots (confusion matrix, ...), copied as logged
    shown = re.findall(r'alt="trial \d+: (plots/\w+\.png)"', page)
    assert shown == ([] if problem == "sine" else PLOTS_BY_PROBLEM[problem])
    assert ("The best trial&#39;s plots" in page) == (problem != "sine")
    best_row = re.search(r'<tr class="best"><td class="num">(\d+)</td>', page)
    assert best_row and int(best_row.group(1)) == best
    if maximize:
        assert "MSE" not in page and "mse" not in page and '<td class="num">0.9412</td>' in page
    else:
        assert "val_mse" in page and "1.000e-02" in page
