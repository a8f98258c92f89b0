"""The engine files in deploy/ run here as the engine would run them: the SLURM script under
bash with the variables SLURM sets (and SLURM's SIGTERM), the Kubernetes Job's worker command
with the environment its manifest gives it. Stores are local (SQLite, or a fresh database on the
PostgreSQL at 127.0.0.1:5432); nothing leaves loopback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweep.core.errors import EXIT_INTERRUPTED, EXIT_USAGE
from sweep.core.processes import stop
from sweep.core.secrets import mask_url
from tests.conftest import ROOT, clean_env
from tests.e2e.test_distributed import scratch_database
from tests.e2e.test_reliability import _wait_for_running_trial

SBATCH = ROOT / "deploy" / "slurm" / "workers.sbatch"
JOB = ROOT / "deploy" / "k8s" / "workers.yaml"
# Long enough trials that SIGTERM lands mid-trial; beats a live trial survives on 2 cores.
TINY = ["experiment=tiny", "trainer.epochs=40", "search.heartbeat_interval=1"]
TINY += ["search.grace_period=10", "search/pruner=none"]


def sbatch_options() -> dict[str, str]:
    """The script's `#SBATCH --key[=value]` lines, as sbatch reads them."""
    found = re.findall(r"^#SBATCH --([a-z-]+)(?:=(\S+))?", SBATCH.read_text(), re.M)
    return {key: value for key, value in found}


def test_the_slurm_array_is_requeued_and_warned_before_the_kill():
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0
    options = sbatch_options()
    assert "requeue" in options and "array" in options
    assert re.fullmatch(r"B:TERM@\d+", options["signal"])  # the worker is the batch step (exec)
    assert re.search(r"^exec .* -m sweep worker ", SBATCH.read_text(), re.M)


def _slurm_task(tmp_path: Path, task: int, *overrides: str) -> subprocess.Popen:
    """The script as SLURM runs one array task: bash, in the submit dir, SLURM_* set."""
    env = {
        **clean_env(),
        "SLURM_SUBMIT_DIR": str(ROOT),
        "SLURM_JOB_ID": str(4200 + task),
        "SLURM_ARRAY_JOB_ID": "4200",
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_CPUS_PER_TASK": "1",
        "TMPDIR": str(tmp_path),
        "SWEEP_PYTHON": sys.executable,
        "SWEEP_STORAGE": f"sqlite:///{tmp_path}/optuna.db",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }
    return subprocess.Popen(
        ["bash", str(SBATCH), *overrides],
        cwd=tmp_path,  # sbatch's cwd is anywhere; the script goes to SLURM_SUBMIT_DIR
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_a_slurm_task_warned_by_sigterm_gives_its_trial_back_and_the_next_task_runs_it(tmp_path):
    task = _slurm_task(tmp_path, 0, *TINY, "search.n_trials=2")
    try:
        number = _wait_for_running_trial(tmp_path, after=0)
        os.kill(task.pid, signal.SIGTERM)  # --signal=B:TERM: the batch step's process alone
        out, _ = task.communicate(timeout=120)
    finally:
        stop(task, grace=5)
    assert task.returncode == EXIT_INTERRUPTED, out
    assert (tmp_path / "sweep-4200-0" / ".setup.lock").is_file()  # paths.store from SLURM_*

    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{tmp_path}/optuna.db")
    given = study.trials[number]
    assert given.state.name == "FAIL" and given.user_attrs["fail_reason"] == "interrupted"

    task = _slurm_task(tmp_path, 1, *TINY, "search.n_trials=2")
    out, _ = task.communicate(timeout=600)
    assert task.returncode == 0, out
    study = optuna.load_study(study_name="sine-mlp", storage=f"sqlite:///{tmp_path}/optuna.db")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    assert [t.params for t in done if t.user_attrs.get("retry_of") == number] == [given.params]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(done[-1].user_attrs["mlflow_run_id"])
    assert run.data.params["trainer.threads"] == "1"  # SLURM_CPUS_PER_TASK


def job() -> dict:
    return yaml.safe_load(JOB.read_text())


def worker_container(manifest: dict) -> dict:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return container


def test_the_k8s_job_is_a_work_queue_that_preemption_does_not_fail():
    manifest = job()
    spec = manifest["spec"]
    assert manifest["kind"] == "Job" and spec["parallelism"] >= 1
    assert "completions" not in spec  # a work queue: done once one pod exits 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy needs it
    rules = spec["podFailurePolicy"]["rules"]
    ignored = [r for r in rules if r["action"] == "Ignore"]
    assert ignored[0]["onPodConditions"] == [{"type": "DisruptionTarget"}]
    failing = [r for r in rules if r["action"] == "FailJob"]
    assert failing[0]["onExitCodes"]["values"] == [EXIT_USAGE]


def test_the_k8s_job_takes_its_secrets_from_a_secret():
    env = {e["name"]: e for e in worker_container(job())["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    for entry in env.values():  # a literal value never carries a password
        assert "value" not in entry or mask_url(entry["value"]) == entry["value"], entry


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A database of this test's own on the shared PostgreSQL; dropped after."""
    with scratch_database("sweep_k") as url:
        yield url


def pod_command(container: dict, overrides: list[str]) -> list[str]:
    """The container's command with `python` as this interpreter and the manifest's overrides
    of the same keys replaced (Hydra refuses one key given twice)."""
    keys = {o.split("=", 1)[0] for o in overrides}
    args = [a for a in container["command"][1:] if a.split("=", 1)[0] not in keys]
    return [sys.executable, *args, *overrides]


@pytest.mark.slow
def test_the_k8s_worker_command_runs_a_study_to_its_target(fresh_db, tmp_path):
    container = worker_container(job())
    env = {e["name"]: e.get("value", "from-the-secret") for e in container["env"]}
    env |= {"SWEEP_STORAGE": fresh_db, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    overrides = ["experiment=tiny", "search.n_trials=2", f"paths.store={tmp_path}"]
    out = subprocess.run(
        pod_command(container, overrides),
        cwd=tmp_path,
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr  # the pod that ends the Job
    storage = optuna.storages.RDBStorage(fresh_db)
    try:
        study = optuna.load_study(study_name="sine-mlp", storage=storage)
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 2
    finally:
        storage.engine.dispose()
