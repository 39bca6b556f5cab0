"""One contract, every backend: the in-memory store, SQLite and PostgreSQL pass the same tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from oriserver.config.database import DatabaseUrl
from oriserver.domain.events import (
    CalculationFailed,
    CalculationRequested,
    FailureCode,
    Inputs,
    Method,
    StoredEvent,
)
from oriserver.domain.totals import MethodTotals, RunningTotals, fold
from oriserver.errors import StoreError
from oriserver.service.ports import ReadFilter
from oriserver.store.factory import open_store
from oriserver.store.memory import InMemoryEventStore
from tests.strategies import INT64_MAX, INT64_MIN
from tests.support.events import calculation, many


def fold_step(totals: RunningTotals, events: Sequence[StoredEvent]) -> RunningTotals:
    return fold(totals, [stored.event for stored in events])


class EventStoreContract:
    """Subclasses provide a ``store`` fixture over an empty, migrated database."""

    def test_an_empty_log_has_head_zero_and_reads_nothing(self, store) -> None:
        assert store.head() == 0
        assert store.read(0, 10) == []

    def test_appended_events_read_back_equal_and_in_order(self, store) -> None:
        events = many(5)
        store.append(events)
        stored = store.read(0, 100)
        assert [s.event for s in stored] == events
        positions = [s.position for s in stored]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)
        assert store.head() == positions[-1]

    def test_positions_keep_increasing_across_batches(self, store) -> None:
        store.append(many(2))
        first_head = store.head()
        store.append(many(2))
        later = store.read(first_head + 1, 100)
        assert len(later) == 4
        assert all(s.position > first_head for s in later)

    def test_append_is_idempotent_on_event_id(self, store) -> None:
        requested, outcome = calculation()
        store.append([requested, outcome])
        head = store.head()
        store.append([requested, outcome])  # a retried batch
        newer = calculation()
        store.append([outcome, *newer])  # a batch mixing a stored event with new ones
        ids = [s.event.event_id for s in store.read(0, 100)]
        assert ids == [requested.event_id, outcome.event_id, newer[0].event_id, newer[1].event_id]
        assert store.head() > head

    def test_extreme_values_round_trip_exactly(self, store) -> None:
        events = [
            *calculation(inputs=Inputs(first=INT64_MAX, last=INT64_MIN), result=-1, client_ip="2001:db8::7"),
            *calculation(Method.FACTORIAL, inputs=Inputs(base=INT64_MIN), client_ip=None,
                         failure=(FailureCode.INVALID_ARGUMENT, "négatif ✗ \"quoted\"\nline")),
            *calculation(inputs=Inputs(first=0, last=INT64_MAX), result=INT64_MAX, trace_id="4bf92f3577b34da6a3ce929d0e0e4736"),
        ]  # fmt: skip
        store.append(events)
        assert [s.event for s in store.read(0, 100)] == events

    def test_read_starts_at_a_position_and_honours_the_limit(self, store) -> None:
        store.append(many(10))
        everything = store.read(0, 100)
        page = store.read(everything[5].position, 3)
        assert page == everything[5:8]

    def test_read_filters_by_method_and_type(self, store) -> None:
        store.append(many(3, Method.SUMMATION) + many(3, Method.FACTORIAL))
        factorials = store.read(0, 100, ReadFilter(method=Method.FACTORIAL))
        assert len(factorials) == 6
        assert {s.event.method for s in factorials} == {Method.FACTORIAL}
        failed = store.read(0, 100, ReadFilter(event_type=CalculationFailed))
        assert len(failed) == 2
        both = store.read(
            0, 100, ReadFilter(method=Method.SUMMATION, event_type=CalculationRequested)
        )
        assert len(both) == 3

    def test_advancing_the_totals_applies_each_event_exactly_once(self, store) -> None:
        events = many(7)
        store.append(events)
        first = store.advance_totals(fold_step, limit=5)
        second = store.advance_totals(fold_step, limit=100)
        third = store.advance_totals(fold_step, limit=100)
        assert (first.applied, second.applied, third.applied) == (5, 9, 0)
        totals, checkpoint = store.load_totals()
        assert checkpoint == store.head()
        assert totals == fold(RunningTotals(), events)
        assert totals.of(Method.SUMMATION) == MethodTotals(requested=7, succeeded=5, failed=2)

    def test_concurrent_projection_runners_never_double_count(self, store) -> None:
        store.append(many(60))
        errors: list[BaseException] = []

        def run() -> None:
            try:
                while store.advance_totals(fold_step, limit=7).applied:
                    pass
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        totals, _ = store.load_totals()
        assert totals.of(Method.SUMMATION) == MethodTotals(requested=60, succeeded=40, failed=20)

    def test_replacing_the_totals_sets_state_and_checkpoint_together(self, store) -> None:
        store.append(many(2))
        wanted = RunningTotals().with_method(Method.FACTORIAL, MethodTotals(9, 8, 1))
        store.replace_totals(wanted, 2)
        assert store.load_totals() == (wanted, 2)
        store.advance_totals(fold_step, limit=100)
        totals, checkpoint = store.load_totals()
        assert checkpoint == store.head()
        assert totals.of(Method.SUMMATION).requested == 1  # only the event after position 2

    def test_checkpoints_are_none_until_saved(self, store) -> None:
        assert store.load_checkpoint("reactor:x") is None
        store.save_checkpoint("reactor:x", 41)
        store.save_checkpoint("reactor:x", 42)
        assert store.load_checkpoint("reactor:x") == 42

    def test_a_lease_excludes_other_holders_until_it_expires(self, store) -> None:
        assert store.try_lease("projection", "a", ttl_s=0.5)
        assert store.try_lease("projection", "a", ttl_s=0.5)  # renewal
        assert not store.try_lease("projection", "b", ttl_s=0.5)
        time.sleep(0.7)
        assert store.try_lease("projection", "b", ttl_s=5)
        assert not store.try_lease("projection", "a", ttl_s=5)
        store.release_lease("projection", "b")
        assert store.try_lease("projection", "a", ttl_s=5)

    # -- retention -----------------------------------------------------------
    def test_a_log_that_never_removed_anything_begins_at_position_one(self, store) -> None:
        assert store.first_position() == 1
        store.append(many(3))
        assert store.first_position() == 1

    def test_removing_before_a_position_keeps_the_rest_and_moves_the_start(self, store) -> None:
        store.append(many(5))
        positions = [s.position for s in store.read(0, 100)]
        cut = positions[4]  # keep the last six of ten events
        assert store.remove_before(1, cut, batch=3) == 4
        assert store.first_position() == cut
        assert [s.position for s in store.read(0, 100)] == positions[4:]
        assert store.head() == positions[-1]

    def test_the_head_stays_and_positions_keep_rising_after_everything_is_removed(
        self, store
    ) -> None:
        store.append(many(2))
        head = store.head()
        assert store.remove_before(1, head + 1, batch=1000) == 4
        assert store.read(0, 10) == []
        assert (store.head(), store.first_position()) == (head, head + 1)
        store.append(many(1))
        assert [s.position > head for s in store.read(0, 10)] == [True, True]

    def test_removal_from_a_start_that_moved_meanwhile_removes_nothing(self, store) -> None:
        store.append(many(3))
        store.remove_before(1, 3, batch=10)
        with pytest.raises(StoreError, match="begins at 3"):
            store.remove_before(1, 5, batch=10)  # a second archiver that read the old start
        assert store.first_position() == 3
        assert len(store.read(0, 100)) == 4

    def test_removal_cannot_reach_past_the_head(self, store) -> None:
        store.append(many(1))
        with pytest.raises(StoreError):
            store.remove_before(1, store.head() + 2, batch=10)
        assert len(store.read(0, 10)) == 2

    def test_removal_leaves_the_totals_and_checkpoints_alone(self, store) -> None:
        store.append(many(4))
        store.advance_totals(fold_step, 100)
        store.save_checkpoint("reactor", 6)
        before = store.load_totals()
        store.remove_before(1, store.head() + 1, batch=2)
        assert store.load_totals() == before
        assert store.all_checkpoints() == {"running_totals": before[1], "reactor": 6}
        store.append(many(1))
        assert store.advance_totals(fold_step, 100).applied == 2

    def test_ping_succeeds_on_a_migrated_database(self, store) -> None:
        store.ping()


class SqlStoreContract(EventStoreContract):
    """What only the SQL backends promise: the database's constraints guard every batch."""

    def test_a_batch_that_violates_a_constraint_stores_nothing(self, store) -> None:
        good = calculation()
        bad = calculation()[0]
        object.__setattr__(bad, "instance_id", None)  # NOT NULL in the events table
        with pytest.raises(StoreError):
            store.append([*good, bad])
        assert store.read(0, 10) == []


class TestInMemoryStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryEventStore:
        return InMemoryEventStore()


class TestSqliteStore(SqlStoreContract):
    @pytest.fixture
    def store(self, sqlite_database: DatabaseUrl) -> Iterator[object]:
        store = open_store(sqlite_database)
        yield store
        store.close()


@pytest.mark.postgres
class TestPostgresStore(SqlStoreContract):
    @pytest.fixture
    def store(self, clean_postgres: DatabaseUrl) -> Iterator[object]:
        store = open_store(clean_postgres)
        yield store
        store.close()
