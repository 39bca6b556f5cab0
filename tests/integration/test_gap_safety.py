"""Concurrent writers on PostgreSQL never make the projection skip an event."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from oriserver.config.database import DatabaseUrl
from oriserver.domain.events import Method
from oriserver.service.projection import ProjectionRunner
from oriserver.service.retention import archive
from oriserver.store.archive_file import ArchiveWriter
from oriserver.store.factory import open_store
from oriserver.store.postgres_sql import APPEND_LOCK_KEY
from oriserver.store.rows import rows_from_records
from tests.support.events import many

pytestmark = pytest.mark.postgres


def test_an_append_waits_while_another_batch_holds_the_append_lock(
    clean_postgres: DatabaseUrl,
) -> None:
    """The mechanism: a batch that got its positions first commits first."""
    store = open_store(clean_postgres)
    done = threading.Event()
    with psycopg.connect(clean_postgres.url) as slow_writer:
        slow_writer.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
        appender = threading.Thread(target=lambda: (store.append(many(1)), done.set()))
        appender.start()
        time.sleep(0.5)
        assert not done.is_set(), "the append did not wait for the batch in progress"
        slow_writer.commit()  # ends the other batch's transaction and frees the lock
    appender.join(10)
    assert done.is_set()
    store.close()


def _append_many(url: str, batches: int, size: int) -> None:
    store = open_store(DatabaseUrl.parse(url))
    for _ in range(batches):
        store.append(many(size))
    store.close()


def test_totals_equal_the_table_counts_after_concurrent_writer_processes(
    clean_postgres: DatabaseUrl,
) -> None:
    """The proof: 3 processes append small batches while the projection runs continuously."""
    store = open_store(clean_postgres)
    runner = ProjectionRunner(store, "gap-test", interval_s=0.001)
    runner.start()
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_append_many, args=(clean_postgres.url, 150, 3)) for _ in range(3)
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    deadline = time.monotonic() + 30
    while store.load_totals()[1] != store.head() and time.monotonic() < deadline:
        runner.wake()
        time.sleep(0.05)
    runner.stop()
    totals, _ = store.load_totals()
    with psycopg.connect(clean_postgres.url) as connection:
        rows = connection.execute(
            "SELECT method, event_type, count(*) FROM events GROUP BY 1, 2"
        ).fetchall()
    counts = {(method, kind): n for method, kind, n in rows}
    summation = totals.of(Method.SUMMATION)
    assert summation.requested == counts[("Summation", "CalculationRequested")] == 1350
    assert summation.succeeded == counts[("Summation", "CalculationSucceeded")]
    assert summation.failed == counts[("Summation", "CalculationFailed")]
    assert runner.stats.applied == 2700
    store.close()


def _append_as_the_event_host(url: str, batches: int, calls: int) -> None:
    """The event host's path: rows straight from call records, folded on write."""
    store = open_store(DatabaseUrl.parse(url))
    origin = uuid.uuid4().int
    now = time.time_ns()
    records = [(0, i, i + 1, 0, 2 * i + 1, "ipv4:10.1.2.3:4000", now, now, None, None)
               for i in range(calls)]  # fmt: skip
    for batch in range(batches):
        store.append_rows(rows_from_records(records, origin, batch * calls, "w"), project=True)
    store.close()


def test_totals_folded_on_write_equal_the_counts_with_four_writers_and_an_archiver(
    clean_postgres: DatabaseUrl, tmp_path: Path
) -> None:
    """Four event-host writers fold their batches on write while an archive removes the
    oldest events: the totals still equal every event counted, archived or live."""
    store = open_store(clean_postgres)
    runner = ProjectionRunner(store, "gap-test", interval_s=0.01)  # catches up a skipped fold
    runner.start()
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_append_as_the_event_host, args=(clean_postgres.url, 40, 50))
        for _ in range(4)
    ]
    for process in writers:
        process.start()
    archived, files = 0, 0
    while any(process.is_alive() for process in writers):
        files += 1
        path = tmp_path / f"{files}.jsonl.gz"
        archived += archive(
            store, datetime.now(UTC) + timedelta(days=1), ArchiveWriter(path)
        ).events
        time.sleep(0.1)
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    deadline = time.monotonic() + 30
    while store.load_totals()[1] != store.head() and time.monotonic() < deadline:
        runner.wake()
        time.sleep(0.05)
    runner.stop()
    totals, _ = store.load_totals()
    summation = totals.of(Method.SUMMATION)
    live = len(store.read(0, 100_000))
    assert archived > 0
    assert archived + live == 4 * 40 * 50 * 2
    assert (summation.requested, summation.succeeded, summation.failed) == (8000, 8000, 0)
    store.close()
