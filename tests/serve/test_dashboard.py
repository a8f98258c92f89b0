"""`python -m sweep dashboard`: optuna-dashboard on a real study, opened in headless Chromium."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sweep.core.errors import ConfigError
from sweep.core.processes import check_port, stop
from sweep.serve import dashboard
from tests.conftest import ROOT, clean_env, sweep_cmd
from tests.e2e.test_ui_browser import _read_lines, _wait, chromium, free_port, screenshot


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:////nonexistent/optuna.db", "no Optuna storage at /nonexistent/optuna.db"),
        ("redis://localhost/0", "--storage"),
    ],
)
def test_a_storage_that_is_not_there_is_one_line(url: str, message: str):
    with pytest.raises(ConfigError, match=message):
        dashboard.check_dashboard_storage(url)


def test_dashboard_on_a_store_without_a_study_exits_2_and_writes_nothing(tmp_path: Path):
    (tmp_path / "mlflow.db").touch()  # an MLflow store, but no study yet
    out = sweep_cmd("dashboard", "--store", str(tmp_path), timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        f"error: no Optuna storage at {tmp_path}/optuna.db; run `make sweep` first, "
        "or pass --store DIR or --storage URL"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


@pytest.mark.slow
def test_dashboard_shows_the_trials_and_charts_of_a_real_study(
    tiny_sweep_store: Path, tmp_path: Path
):
    port = free_port()
    err = tmp_path / "dashboard.err"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweep", "dashboard", "--store", str(tiny_sweep_store)]
        + ["--port", str(port)],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=err.open("w"),
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    printed = ""
    driver = None
    try:
        while "study 'sine-mlp'" not in printed:
            printed += lines.get(timeout=120)
        assert f"at http://127.0.0.1:{port}/dashboard" in printed
        study_url = re.search(r"study 'sine-mlp'\s+(http://\S+)", printed).group(1)
        driver = chromium(tmp_path / "profile")
        driver.get(study_url)
        # the history chart, its y axis named after the study's objective (not "Objective 0")
        _wait(driver, lambda d: d.find_elements("css selector", ".js-plotly-plot .main-svg"))
        _wait(driver, lambda d: "val_mse" in d.find_element("tag name", "body").text)
        body = driver.find_element("tag name", "body").text
        assert "History" in body and "Hyperparameter Importance" in body
        assert "Objective 0" not in body
        screenshot(driver, "dashboard-study.png")
        driver.get(f"{study_url}/trials")
        _wait(driver, lambda d: "Trial 4" in d.find_element("tag name", "body").text)
        body = driver.find_element("tag name", "body").text
        assert all(f"Trial {n}" in body for n in range(5)), body
        assert "Intermediate Values" in body and "mlflow_run_id" in body
        screenshot(driver, "dashboard-trials.png")
    except Exception:
        if driver is not None:
            screenshot(driver, "dashboard-failure.png")
        print(f"printed:\n{printed}\nstderr:\n{err.read_text()}")
        raise
    finally:
        if driver is not None:
            driver.quit()
        stop(proc, grace=30)  # SIGTERM, as a service manager ends it
        proc.stdout.close()
    assert proc.returncode == 0, err.read_text()
    check_port("127.0.0.1", port)  # raises if optuna-dashboard outlived `sweep dashboard`
