"""Stores, runs, batched metrics and artifacts: the lifecycle of an MLflow run.

Training knows nothing of MLflow; `sweep.run` hands it a `Run` (or a `NullRun` when
`tracking=none`), and the study uses `Tracker` for the sweep's parent run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# A tracking server restarted mid-sweep: MLflow's default 7 retries back off 4, 8, .. 120 s
# (~4 min) before a call fails; a server down at start is refused in 5 s by check_reachable.
# Defaults only: a user's own MLFLOW_HTTP_REQUEST_MAX_RETRIES / _BACKOFF_FACTOR win (a sweep
# that should give up on a lost server sooner, or wait longer, sets them).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # one line per trial

import logging  # noqa: E402

import mlflow  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
# MLflow logs a database error with its traceback, then raises it: the raised one is reported.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
import numpy as np  # noqa: E402
import requests  # noqa: E402
import yaml  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME  # noqa: E402

from sweep.core.errors import ConfigError, SweepError, first_line, no_space, reason  # noqa: E402
from sweep.core.secrets import mask_data, mask_text, mask_url  # noqa: E402
from sweep.core.sqlite import enable_wal  # noqa: E402

BATCH = 1000  # MLflow's limit of metrics per log_batch call
TERMINAL = ("FINISHED", "FAILED", "KILLED")


class TrackingUnavailable(SweepError):
    """The tracking server did not answer for MLflow's whole retry budget: a run's record cannot
    be completed now. Its message starts "tracking server" (study.NOT_ITS_OWN counts on it)."""


def retry_budget() -> tuple[int, float]:
    """MLflow's retries and the seconds they wait in all: urllib3 backs off 0, 2F, 4F .. (each at
    most 120 s, plus up to 1 s of jitter) for a backoff factor F."""
    retries = int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    factor = float(os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"])
    return retries, sum(min(factor * 2 ** (k - 1), 120.0) for k in range(2, retries + 1))


def unanswered(exc: BaseException) -> bool:
    """Whether an MLflow call failed because its server never answered (refused, timed out, or
    only 5xx/429 until the retries ran out), not because it refused the request."""
    lost = (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)
    chain, seen = [], exc
    while seen is not None and len(chain) < 20:  # __context__ can loop
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    mlflow_call = any(isinstance(e, MlflowException) for e in chain)
    return mlflow_call and any(isinstance(e, lost) for e in chain)


@contextlib.contextmanager
def answered(uri: str | None) -> Iterator[None]:
    """MLflow's error once its retry budget is spent, as one line (`TrackingUnavailable`)."""
    try:
        yield
    except Exception as exc:
        if not unanswered(exc):
            raise
        retries, seconds = retry_budget()
        raise TrackingUnavailable(
            f"tracking server {mask_url(uri)} did not answer for MLflow's whole retry budget "
            f"({retries} retries over ~{seconds:.0f} s: MLFLOW_HTTP_REQUEST_MAX_RETRIES, "
            f"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR)"
        ) from exc


def str_tags(tags: dict | None) -> dict[str, str]:
    """Tag values as masked strings (a tracking server's protobuf refuses ints)."""
    return {k: mask_text(v) for k, v in (tags or {}).items()}


_writer: ThreadPoolExecutor | None = None
MODEL_FILE = "model.keras"  # a run's own artifact: its weights, as Keras saves them


def write_in_background(on: bool = True, drop: bool = False) -> None:
    """Let a worker render and write plots on one thread while its trial logs the model (each
    run waits for its own writes before it closes: `Run.written`).

    Turning it off waits for every queued write, unless `drop`: a worker stopping because its
    tracking server is gone drops them (each would wait out MLflow's retry budget again).
    """
    global _writer
    if on and _writer is None:
        _writer = ThreadPoolExecutor(1, thread_name_prefix="sweep-artifacts")
    elif not on and _writer is not None:
        _writer.shutdown(wait=True, cancel_futures=drop)
        _writer = None


def warm_up() -> None:
    """Import TensorFlow while a worker starts, not in its first trial. A trial keeps its model
    as a `.keras` file (`Run.log_keras`), so mlflow.keras (~0.3 s) loads only to register one."""
    import sweep.train.backend  # noqa: F401 - TensorFlow quietly


def drain() -> None:
    """Wait until every deferred artifact is written (a benchmark's timed block, a check)."""
    if _writer is not None:
        _writer.submit(lambda: None).result()


@contextlib.contextmanager
def _naming(artifact: str) -> Iterator[None]:
    """Name the artifact an OSError was writing: MLflow stages a file in the store and renames
    it, so a full disk's error names no file otherwise."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = artifact
        raise


class Run:
    """One open MLflow run: params once, metrics buffered, artifacts as files."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._metrics: list[Metric] = []
        self._pending: list[Future] = []
        self.outcome: tuple[str, dict[str, Any]] = ("FINISHED", {})

    def close_as(self, status: str, tags: dict[str, Any] | None = None) -> None:
        """How `tracked_run` closes this run if its block ends without an exception."""
        self.outcome = (status, dict(tags or {}))

    def log_params(self, params: dict[str, Any], tags: dict[str, Any] | None = None) -> None:
        """Params (and tags, if any) in as few writes as MLflow's 100-per-batch limit allows."""
        items = [Param(k, mask_text(v)[:6000]) for k, v in params.items()]
        labels = [RunTag(k, v) for k, v in str_tags(tags).items()]
        for i in range(0, max(len(items), 1 if labels else 0), 100):
            first = labels if i == 0 else []
            self.client.log_batch(self.run_id, params=items[i : i + 100], tags=first)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Buffer metrics; they reach the store at `flush()` in one batched write."""
        now = int(time.time() * 1000)
        self._metrics += [Metric(k, float(v), now, step) for k, v in metrics.items()]

    def flush(self) -> None:
        while self._metrics:
            chunk, self._metrics = self._metrics[:BATCH], self._metrics[BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in str_tags(tags).items()])

    def log_text(self, text: str, path: str) -> None:
        with _naming(path):
            self.client.log_text(self.run_id, mask_text(text), path)

    def log_yaml(self, data: dict, path: str) -> None:
        self.log_text(yaml.safe_dump(mask_data(data), sort_keys=False), path)

    def log_json(self, data: dict, path: str) -> None:
        self.log_text(json.dumps(mask_data(data), indent=2, sort_keys=True, default=str), path)

    def log_figure(self, fig: Any, path: str) -> None:
        with _naming(path):
            self.client.log_figure(self.run_id, fig, path)

    def log_bytes(self, data: bytes, path: str) -> None:
        """A file's content (e.g. a rendered PNG) as the artifact `path`."""
        folder, name = os.path.split(path)
        with _naming(path), tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, name)
            with open(local, "wb") as handle:
                handle.write(data)
            self.client.log_artifact(self.run_id, local, folder or None)

    def defer(self, write: Callable[[], None], what: str) -> None:
        """Call `write` now, or on the background writer once a worker has turned it on (it
        renders plots while the trial logs its model); `written` waits for it."""
        if _writer is None:
            self._guarded(write, what)
        else:
            self._pending.append(_writer.submit(self._guarded, write, what))

    def _guarded(self, write: Callable[[], None], what: str) -> None:
        """An OSError (a full disk, a read-only store) means the run's record cannot be stored:
        it is raised, to fail the run. Anything else only loses that file: a warning."""
        try:
            with answered(self.client.tracking_uri):  # a lost server said in the sweep's words
                write()
        except OSError:
            raise
        except Exception as exc:  # a plot that fails to render, or a lost server: a warning
            print(f"warning: {what} of run {self.run_id}: {first_line(exc)}", file=sys.stderr)

    def written(self) -> None:
        """Wait for this run's deferred writes and raise the first that failed: in the run's own
        trial, before it is told, so a finished trial always has its whole record."""
        pending, self._pending = self._pending, []
        wait(pending)
        for future in pending:
            if future.exception() is not None:
                raise future.exception()

    def log_keras(self, model: Any) -> None:
        """The trial's model as one `.keras` artifact (what reruns, `predict` and the report
        load): ~10x cheaper than a full MLflow model, which is made from this file only for the
        models that get registered (tracking/models.py: `promote`)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, MODEL_FILE)
            with _naming(MODEL_FILE):  # the temporary folder's disk
                model.save(path)
            try:
                self.client.log_artifact(self.run_id, path)
            except OSError as exc:  # a copy names no file: say where it was going
                if exc.filename is None:
                    exc.filename = self._destination(MODEL_FILE)
                raise

    def _destination(self, artifact: str) -> str:
        """Where an artifact of this run goes: its path in a local store, else its URI."""
        try:
            uri = self.client.get_run(self.run_id).info.artifact_uri
        except Exception:  # noqa: BLE001 - only to name a file in an error already raised
            return artifact
        return f"{uri.removeprefix('file://')}/{artifact}"

    def log_model(
        self,
        model: Any,
        x_example: np.ndarray,
        requirements: list[str],
        model_id: str | None = None,
    ) -> str:
        """Log a Keras model MLflow can load back; explicit requirements skip a ~6 s inference.
        `model_id`: a logged model made beforehand (MLflow would put a new one in the process's
        active experiment, not necessarily the run's)."""
        import mlflow.keras
        from mlflow.models import Model, infer_signature

        signature = infer_signature(x_example, np.asarray(model(x_example)))
        # What mlflow.keras.log_model does, with the run named instead of made active: no
        # fluent start/end round trips per trial, and no process-wide "active run" to leak.
        with _naming("model"):
            info = Model.log(
                artifact_path=None,
                name="model",
                flavor=mlflow.keras,
                run_id=self.run_id,
                model=model,
                signature=signature,
                pip_requirements=requirements,
                model_id=model_id,
            )
        return info.model_uri

    def end(self, status: str = "FINISHED", tags: dict[str, Any] | None = None) -> None:
        """Write what is buffered (and `tags`) in one batch, then close with an MLflow status:
        FINISHED, FAILED or KILLED."""
        try:
            if tags:
                labels = [RunTag(k, v) for k, v in str_tags(tags).items()]
                n = BATCH - len(labels)  # MLflow's limit counts metrics and tags together
                self.client.log_batch(self.run_id, metrics=self._metrics[:n], tags=labels)
                self._metrics = self._metrics[n:]
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status)


class NullRun(Run):
    """`tracking=none`: the same calls, nothing stored."""

    def __init__(self) -> None:
        self.run_id = None
        self._metrics = []
        self.outcome = ("FINISHED", {})

    def log_params(self, params: dict[str, Any], tags: dict[str, Any] | None = None) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None: ...
    def flush(self) -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...
    def log_text(self, text: str, path: str) -> None: ...
    def log_figure(self, fig: Any, path: str) -> None: ...
    def log_bytes(self, data: bytes, path: str) -> None: ...
    def defer(self, write: Callable[[], None], what: str) -> None: ...
    def written(self) -> None: ...
    def log_keras(self, model: Any) -> None: ...
    def log_model(
        self,
        model: Any,
        x_example: np.ndarray,
        requirements: list[str],
        model_id: str | None = None,
    ) -> str:
        return ""

    def end(self, status: str = "FINISHED", tags: dict[str, Any] | None = None) -> None: ...


@contextlib.contextmanager
def tracked_run(
    tracker: Tracker | NullTracker,
    name: str,
    parent_run_id: str | None = None,
    tags: dict[str, Any] | None = None,
    failed_tags: dict[str, Any] | None = None,
) -> Iterator[Run]:
    """Own one run from start to its final status, as `mlflow.start_run()` does.

    The block's end closes it FINISHED (or as `run.close_as` said); an interrupt closes it KILLED
    and any error FAILED, both with a `fail_reason` tag (plus `failed_tags`), and re-raises.
    A server that stopped answering raises `TrackingUnavailable` and leaves the run RUNNING:
    closing it would wait out the retry budget again; the next start closes it
    (`study.close_orphan_runs`).
    """
    with answered(tracker.uri):
        run = tracker.start_run(name, parent_run_id, tags)
        try:
            yield run
            run.written()  # a deferred artifact that could not be written fails the run
        except KeyboardInterrupt:
            _close_failed(run, "KILLED", {**(failed_tags or {}), "fail_reason": "interrupted"})
            raise
        except BaseException as exc:
            if not unanswered(exc):
                _close_failed(run, "FAILED", {**(failed_tags or {}), "fail_reason": reason(exc)})
            raise
        status, end_tags = run.outcome
        run.end(status, end_tags)


def _close_failed(run: Run, status: str, tags: dict[str, Any]) -> None:
    """Close a run whose block failed, without hiding why: a store that cannot take this write
    either (a full disk) leaves the run RUNNING for the next start to close."""
    try:
        with contextlib.suppress(Exception):
            run.written()  # nothing more is written to the run once it is closed
        run.end(status, tags)
    except Exception as exc:
        if not no_space(exc):  # a full disk is the error line that follows
            print(f"warning: run {run.run_id} stays open: {first_line(exc)}", file=sys.stderr)


class Tracker:
    """An MLflow store and experiment; creates them once, then opens runs in them."""

    def __init__(self, uri: str, experiment: str, artifact_root: str | None = None) -> None:
        self.uri = uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        self.client = MlflowClient(uri)
        self.experiment_id: str | None = None
        mlflow.set_tracking_uri(uri)

    @property
    def enabled(self) -> bool:
        return True

    def setup(self) -> str:
        """Create the store (schema migration) and the experiment; safe to call from any worker."""
        check_reachable(self.uri)
        if self.uri.startswith("sqlite:"):
            enable_wal(self.uri)  # makes the store's folder, once the command is under way
        try:
            exp = self.client.get_experiment_by_name(self.experiment)
            exp_id = self._create_experiment() if exp is None else exp.experiment_id
        except MlflowException as exc:
            raise ConfigError(f"tracking.uri={mask_url(self.uri)}: {first_line(exc)}") from exc
        self.experiment_id = exp_id
        mlflow.set_experiment(experiment_id=exp_id)
        return exp_id

    def _create_experiment(self) -> str:
        location = None
        if self.artifact_root and not self.uri.startswith(("http:", "https:")):
            Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
            location = Path(self.artifact_root).resolve().as_uri()
        try:
            return self.client.create_experiment(self.experiment, artifact_location=location)
        except MlflowException:  # another worker created it first
            return self.client.get_experiment_by_name(self.experiment).experiment_id

    def start_run(
        self, name: str, parent_run_id: str | None = None, tags: dict | None = None
    ) -> Run:
        """Open a run (a child when parent_run_id is given); its calls name it by id."""
        if self.experiment_id is None:
            self.setup()
        all_tags = {MLFLOW_RUN_NAME: name, **str_tags(tags)}
        if parent_run_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        info = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name).info
        return Run(self.client, info.run_id)

    def open_run(self, run_id: str) -> Run:
        """Handle on an existing run (a parent reopened by a resumed sweep or another worker)."""
        return Run(self.client, run_id)

    def status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    def reachable(self) -> bool:
        """Whether the store answers now (a server's health check, 5 s, no retries): a stopped
        sweep records its summary only then, instead of waiting out the retry budget again."""
        try:
            check_reachable(self.uri)
        except ConfigError:
            return False
        return True

    def reopen(self, run_id: str) -> None:
        """Mark a finished parent RUNNING again while a resumed sweep adds trials to it."""
        self.client.update_run(run_id, status="RUNNING")

    def terminate(
        self,
        run_id: str,
        status: str,
        reason: str | None = None,
        over: tuple[str, ...] = (),
        tags: dict[str, Any] | None = None,
    ) -> None:
        """Close a run another (dead) process left RUNNING (or closed in a status of `over`);
        `tags` overwrite what that process wrote last (a `sweep.state` it never got to tell)."""
        try:
            if self.client.get_run(run_id).info.status in set(TERMINAL) - set(over):
                return
            labels = {**(tags or {}), **({"fail_reason": reason} if reason else {})}
            if labels:
                self.client.log_batch(
                    run_id, tags=[RunTag(k, v) for k, v in str_tags(labels).items()]
                )
            self.client.set_terminated(run_id, status)
        except MlflowException:
            pass

    def child_runs(
        self, parent_run_id: str, status: str | None = None, tags: dict[str, Any] | None = None
    ) -> list:
        """The runs nested under a parent, optionally only those in one status or with `tags`."""
        query = f"tags.mlflow.parentRunId = '{parent_run_id}'"
        if status:
            query += f" and attributes.status = '{status}'"
        for key, value in str_tags(tags).items():
            query += f" and tags.`{key}` = '{value}'"
        # a tracker made only to close a dead worker's runs was never set up: the parent knows
        experiment = self.experiment_id or self.client.get_run(parent_run_id).info.experiment_id
        return self.client.search_runs([experiment], query, max_results=10000)


class NullTracker:
    """Stands in for Tracker when `tracking=none`."""

    uri = None
    experiment_id = None
    enabled = False

    def setup(self) -> None:
        return None

    def start_run(
        self, name: str, parent_run_id: str | None = None, tags: dict | None = None
    ) -> Run:
        return NullRun()

    def open_run(self, run_id: str) -> Run:
        return NullRun()

    def status(self, run_id: str) -> str:
        return "FINISHED"

    def reachable(self) -> bool:
        return True

    def reopen(self, run_id: str) -> None: ...

    def child_runs(
        self, parent_run_id: str, status: str | None = None, tags: dict[str, Any] | None = None
    ) -> list:
        return []

    def terminate(
        self,
        run_id: str,
        status: str,
        reason: str | None = None,
        over: tuple[str, ...] = (),
        tags: dict[str, Any] | None = None,
    ) -> None: ...


def make_tracker(tracking: Any) -> Tracker | NullTracker:
    """Tracker for the `tracking` config group."""
    if not tracking.enabled:
        return NullTracker()
    return Tracker(tracking.uri, tracking.experiment, tracking.get("artifact_root"))


def check_reachable(uri: str) -> None:
    """Fail in seconds with one line when a tracking server does not answer."""
    if not uri.startswith(("http:", "https:")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise ConfigError(
            f"tracking.uri={mask_url(uri)} is unreachable: {type(exc).__name__}"
        ) from exc
