"""Archiving while writers append: every appended event ends up in an archive or in the
live log, exactly once, and the running totals neither move nor lose a count."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from oriserver.config.database import DatabaseUrl
from oriserver.domain.events import Event, StoredEvent
from oriserver.domain.totals import RunningTotals, fold
from oriserver.service.projection import fold_stored
from oriserver.service.retention import Chain, archive, rebuild
from oriserver.store.archive_file import ArchiveWriter, archived_events, read_events
from oriserver.store.factory import open_store
from oriserver.store.rows import to_row
from tests.support.events import many

FUTURE = datetime.now(UTC) + timedelta(days=3650)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> DatabaseUrl:
    name = "sqlite_database" if request.param == "sqlite" else "clean_postgres"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def _append(database: DatabaseUrl, stop: threading.Event, appended: list[Event]) -> None:
    store = open_store(database)
    try:
        while not stop.is_set():
            events = many(5)
            store.append_rows([to_row(e) for e in events], project=True)
            appended.extend(events)
            time.sleep(0.002)
    finally:
        store.close()


def _read_archives(paths: list[Path], live_first: int) -> Iterator[StoredEvent]:
    chain = Chain(live_first)
    for path in paths:
        for page in read_events(path, chain):
            yield from page
    chain.finish()


def test_archives_and_the_live_log_hold_every_appended_event_once(
    database: DatabaseUrl, tmp_path: Path
) -> None:
    store = open_store(database)
    appended: list[Event] = []
    stop = threading.Event()
    writers = [threading.Thread(target=_append, args=(database, stop, appended)) for _ in range(3)]
    for writer in writers:
        writer.start()
    paths, results = [], []
    while len(paths) < 4:  # archive repeatedly while the writers go on
        time.sleep(0.2)
        path = tmp_path / f"archive-{len(paths)}.jsonl.gz"
        results.append(archive(store, FUTURE, ArchiveWriter(path), remove_batch=7))
        paths.append(path)
    time.sleep(0.1)
    stop.set()
    for writer in writers:
        writer.join(120)
    first = store.first_position()
    assert all(r.events > 0 for r in results), results
    assert store.head() >= results[-1].before_position, "no append after the last archive"

    archived = list(_read_archives(paths, first))
    live = store.read(0, 1_000_000)
    positions = [e.position for e in archived] + [e.position for e in live]
    assert positions == sorted(set(positions)), "a position is missing order or appears twice"
    assert max(e.position for e in archived) < first <= live[0].position
    ids = [e.event.event_id for e in archived] + [e.event.event_id for e in live]
    assert len(ids) == len(appended)
    assert set(ids) == {e.event_id for e in appended}

    expected = fold(RunningTotals(), appended)  # counted from what the writers sent
    while store.advance_totals(fold_stored, 10_000).applied:
        pass
    totals, checkpoint = store.load_totals()
    assert (totals, checkpoint) == (expected, store.head())
    assert rebuild(store, archived_events(paths)) == (expected, store.head())
    store.close()


def test_events_a_checkpoint_has_not_passed_are_kept(
    sqlite_database: DatabaseUrl, tmp_path: Path
) -> None:
    store = open_store(sqlite_database)
    store.append(many(4))
    store.advance_totals(fold_stored, 100)
    store.save_checkpoint("webhook", 3)  # a reactor that is behind
    done = archive(store, FUTURE, ArchiveWriter(tmp_path / "a.jsonl.gz"))
    assert (done.events, done.before_position, done.held_by) == (3, 4, "webhook")
    assert store.first_position() == 4
    store.close()


def test_events_stored_at_or_after_the_cutoff_are_kept(
    sqlite_database: DatabaseUrl, tmp_path: Path
) -> None:
    store = open_store(sqlite_database)
    store.append(many(2))
    cutoff = datetime.now(UTC) + timedelta(milliseconds=20)
    time.sleep(0.05)
    store.append(many(1))
    store.advance_totals(fold_stored, 100)
    done = archive(store, cutoff, ArchiveWriter(tmp_path / "a.jsonl.gz"))
    assert (done.events, done.before_position, done.held_by) == (4, 5, None)
    assert [e.position for e in store.read(0, 10)] == [5, 6]
    store.close()
