"""The running-totals projection: exactly once, across restarts, leased, and replayable."""

from __future__ import annotations

import time

import pytest

from oriserver.config.database import DatabaseUrl
from oriserver.domain.events import Method
from oriserver.domain.totals import MethodTotals, RunningTotals, fold
from oriserver.service.projection import ProjectionRunner, rebuild
from oriserver.store.factory import open_store
from tests.support.events import many


def wait_until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> DatabaseUrl:
    name = "sqlite_database" if request.param == "sqlite" else "clean_postgres"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def test_the_runner_catches_up_and_keeps_up(database: DatabaseUrl) -> None:
    store = open_store(database)
    store.append(many(30))
    runner = ProjectionRunner(store, "test-holder", interval_s=0.05)
    runner.start()
    try:
        wait_until(lambda: store.load_totals()[1] == store.head())
        store.append(many(9, Method.FACTORIAL))
        runner.wake()
        wait_until(lambda: store.load_totals()[1] == store.head())
        totals, _ = store.load_totals()
        assert totals.of(Method.SUMMATION) == MethodTotals(30, 20, 10)
        assert totals.of(Method.FACTORIAL) == MethodTotals(9, 6, 3)
        assert runner.stats.lag == 0
    finally:
        runner.stop()
        store.close()


def test_a_restarted_runner_applies_nothing_twice(database: DatabaseUrl) -> None:
    store = open_store(database)
    events = many(12)
    store.append(events)
    for _ in range(3):  # three "restarts", each a fresh runner on the same database
        runner = ProjectionRunner(store, f"holder-{_}", interval_s=0.05)
        runner.start()
        wait_until(lambda: store.load_totals()[1] == store.head())
        runner.stop()
    totals, _ = store.load_totals()
    assert totals == fold(RunningTotals(), events)
    store.close()


def test_only_the_lease_holder_runs_the_projection(database: DatabaseUrl) -> None:
    store = open_store(database)
    store.append(many(5))
    first = ProjectionRunner(store, "first", interval_s=0.05)
    second = ProjectionRunner(store, "second", interval_s=0.05)
    first.start()
    wait_until(lambda: first.leading)
    second.start()
    time.sleep(0.3)
    assert not second.leading
    wait_until(lambda: second.stats.checkpoint == store.head())  # followers still report progress
    first.stop()  # releases the lease
    store.append(many(5))
    second.wake()
    wait_until(lambda: second.leading and store.load_totals()[1] == store.head())
    second.stop()
    assert store.load_totals()[0].of(Method.SUMMATION).requested == 10
    store.close()


def test_rebuild_from_the_log_equals_the_live_totals(database: DatabaseUrl) -> None:
    store = open_store(database)
    store.append(many(25) + many(7, Method.FACTORIAL))
    runner = ProjectionRunner(store, "live", interval_s=0.05)
    runner.start()
    wait_until(lambda: store.load_totals()[1] == store.head())
    runner.stop()
    live = store.load_totals()
    store.replace_totals(RunningTotals(), 0)  # e.g. a corrupted or outdated projection
    rebuilt, position = rebuild(store, page=4)  # small pages exercise the paging
    assert (rebuilt, position) == live
    assert store.load_totals() == live
    store.close()


def test_events_appended_during_a_rebuild_are_counted_once(database: DatabaseUrl) -> None:
    store = open_store(database)
    store.append(many(10))
    rebuild(store)
    store.append(many(4))  # arrives after the replay read the log
    runner = ProjectionRunner(store, "live", interval_s=0.05)
    runner.start()
    wait_until(lambda: store.load_totals()[1] == store.head())
    runner.stop()
    assert store.load_totals()[0].of(Method.SUMMATION).requested == 14
    store.close()
