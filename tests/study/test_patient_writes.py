"""A study's writes on PostgreSQL when the connection drops mid-statement (storage.py): the
repeatable ones run again on a fresh connection instead of stopping the sweep."""

from __future__ import annotations

import threading
import time

import optuna
import psycopg2
import pytest

from sweep.study.pruning import write_intermediate
from sweep.study.storage import PatientStorage
from tests.e2e.test_distributed import _admin
from tests.e2e.test_proxy import db  # noqa: F401 - the fixture: a fresh database per test


def blocked_pid(admin, seconds: float = 30) -> int:  # noqa: ANN001 - a psycopg2 connection
    """The backend waiting on a row lock: the write under test, mid-statement."""
    deadline = time.monotonic() + seconds
    with admin.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query ILIKE '%trial_intermediate_values%'"
            )
            if row := cur.fetchone():
                return row[0]
            time.sleep(0.1)
    pytest.fail("the batch of epoch values never waited on the held row")


@pytest.mark.slow
def test_a_batch_of_epoch_values_cut_mid_statement_is_written_again(db):  # noqa: F811
    """The pg restart fault test stopped a sweep in 1 of 3 runs here: the pruner's batched
    insert of epoch values (one transaction) was not run again like Optuna's per-value call."""
    storage = PatientStorage(db.url)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    admin = _admin()
    holder = psycopg2.connect(db.url)  # a transaction of its own, left open
    with holder.cursor() as cur:  # the insert's foreign-key check waits on this row lock
        cur.execute(f"SELECT 1 FROM trials WHERE trial_id = {trial._trial_id} FOR UPDATE")
    errors: list[BaseException] = []

    def write() -> None:
        try:
            write_intermediate(storage, trial._trial_id, {1: 0.5, 2: 0.25})
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (blocked_pid(admin),))
    finally:
        holder.rollback()
        writer.join(60)
        holder.close()
        admin.close()
    assert not errors, errors
    assert storage.get_trial(trial._trial_id).intermediate_values == {1: 0.5, 2: 0.25}
    storage.engine.dispose()
