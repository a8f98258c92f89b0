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
        [0.5, 0.05, 0.2],
        log_axes=["optimizer.learning_rate"],
        highlight={"best": 1},
    )
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["model.activation", "optimizer.learning_rate (log)", "val MSE (log)"]
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
        # A study of one objective has no Pareto front section.
        assert headings == [title for key, title in report.SECTIONS if key != "pareto"]
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
