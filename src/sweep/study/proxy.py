"""The study through Optuna's gRPC storage proxy (`search.storage=grpc://host:port`), with the
project's heartbeat carried through it.

Optuna's proxy client keeps no heartbeat, so a killed worker's trial would stay RUNNING for ever
and the last worker wait on it. Here a heartbeat is a trial system attribute (`BEAT_ATTR`, the
beating worker's wall-clock time), which any proxy carries like any other attribute; each worker's
stale check fails RUNNING trials whose last beat is older than `search.grace_period` by its own
clock (hosts of one study keep NTP time, as fail_stale already assumes). Workers on the database
directly write the same attribute (storage.PatientStorage), so both kinds can share one study.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from sweep.config.stores import GRPC, check_proxy_beats, grpc_address
from sweep.core.errors import ConfigError

# Experimental since Optuna 4.2, still in 5.0: said on every worker's start, about nothing it does.
warnings.filterwarnings(
    "ignore",
    message=r".*(GrpcStorageProxy|run_grpc_proxy_server)",
    category=optuna.exceptions.ExperimentalWarning,
)

BEAT_ATTR = "sweep:heartbeat"
READY_SECONDS = 10

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


def is_grpc(url: str) -> bool:
    """Whether the study is reached through a proxy: no SQL, heartbeats as attributes."""
    return url.startswith(GRPC)


def reader(url: str) -> GrpcStorageProxy:
    """A plain client for commands that only read a study (report, robust): no heartbeats."""
    host, port = grpc_address(url)
    return GrpcStorageProxy(host=host, port=port)


def last_beat(trial: FrozenTrial) -> float | None:
    """When the trial last beat (Unix seconds), or None if it never did."""
    beat = trial.system_attrs.get(BEAT_ATTR)
    return float(beat) if isinstance(beat, int | float) else None


def beat_is_stale(trial: FrozenTrial, grace: float, now: float | None = None) -> bool:
    """Whether a RUNNING trial is silent for longer than `grace`: since its last beat, or since
    its start when it never beat (its worker died between ask and the first beat). A beat from
    before the start is not its own: a retry is queued with its original's attributes."""
    start = trial.datetime_start.timestamp() if trial.datetime_start else None
    beats = [t for t in (last_beat(trial), start) if t is not None]
    return bool(beats) and (now or time.time()) - max(beats) > grace


def record_beat(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    """Stamp the trial's beat; a trial already ended (failed as stale meanwhile) takes none, and
    its worker learns so when it tells (as with Optuna's heartbeat, which never refuses)."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())


def without_beat(trial: FrozenTrial) -> FrozenTrial:
    """The trial without its last beat, for Optuna's retry callback, which copies every system
    attribute onto the retry: an inherited beat would make the retry look stale at once."""
    trial.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != BEAT_ATTR}
    return trial


class BeatingProxy(GrpcStorageProxy, BaseHeartbeat):
    """Optuna's gRPC proxy client, with heartbeats: Optuna's `fail_stale_trials` and the worker's
    heartbeat thread use it as they use an RDB storage with heartbeats."""

    def __init__(
        self, host: str, port: int, interval: int, grace: int, on_stale: StaleCallback | None
    ) -> None:
        super().__init__(host=host, port=port)
        self.heartbeat_interval, self.grace_period, self.on_stale = interval, grace, on_stale

    def record_heartbeat(self, trial_id: int) -> None:
        record_beat(self, trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        now = time.time()
        return [t._trial_id for t in running if beat_is_stale(t, self.grace_period, now)]

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self.on_stale


def connect(url: str, interval: int, grace: int, on_stale: StaleCallback | None) -> BeatingProxy:
    """The proxy client for `url`, once the proxy answers: an unreachable one is one line."""
    import grpc

    check_proxy_beats(interval, grace)
    host, port = grpc_address(url)
    storage = BeatingProxy(host, port, interval, grace, on_stale)
    try:
        storage.wait_server_ready(timeout=READY_SECONDS)
    except (ConnectionError, grpc.RpcError) as exc:
        storage.close()
        raise ConfigError(
            f"search.storage={url}: no proxy answers within {READY_SECONDS} s "
            "(start it with `python -m sweep proxy --storage postgresql://...`)"
        ) from exc
    return storage


def answers(url: str, seconds: float = 5) -> bool:
    """Whether the proxy at `url` takes a connection now (a stopped sweep's quick look)."""
    import grpc

    host, port = grpc_address(url)
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=seconds)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()
