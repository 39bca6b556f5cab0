"""A call record becomes exactly the two events it describes, with ids stable across retries."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from oriserver.domain.events import (
    CalculationFailed,
    CalculationRequested,
    CalculationSucceeded,
    FailureCode,
    Method,
)
from oriserver.service.calls import FACTORIAL, INVALID_ARGUMENT, OUT_OF_RANGE, SUMMATION
from oriserver.store.memory import InMemoryEventStore
from oriserver.store.rows import client_ip, rows_from_records, to_row
from tests.strategies import INT64_MAX, INT64_MIN

int64s = st.integers(INT64_MIN, INT64_MAX)
peers = st.sampled_from(
    [("ipv4:10.0.0.7:5123", "10.0.0.7"), ("ipv6:[::1]:40000", "::1"),
     ("ipv6:%5B2001:db8::7%5D:1", "2001:db8::7"), ("unix:/tmp/x.sock", None)]
)  # fmt: skip
ORIGIN = uuid.uuid4().int


def micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@st.composite
def call_records(draw: st.DrawFn) -> tuple:
    method = draw(st.sampled_from([SUMMATION, FACTORIAL]))
    first = draw(int64s)
    last = draw(int64s) if method == SUMMATION else None
    outcome = draw(st.sampled_from([0, OUT_OF_RANGE, INVALID_ARGUMENT]))
    value = draw(int64s) if outcome == 0 else draw(st.text(max_size=60))
    peer = draw(peers)
    started = draw(st.integers(0, 2**62))
    trace = draw(st.none() | st.text("0123456789abcdef", min_size=32, max_size=32))
    key = draw(st.none() | st.text(min_size=1, max_size=40))
    record = (method, first, last, outcome, value, peer[0], started, started + 1000, trace, key)
    return record, peer[1]


@given(st.lists(call_records(), min_size=1, max_size=20))
def test_each_record_becomes_its_request_and_its_outcome(drawn: list[tuple]) -> None:
    records = [r for r, _ in drawn]
    store = InMemoryEventStore()
    store.append_rows(rows_from_records(records, ORIGIN, 0, "pod-1"))
    stored = [s.event for s in store.read(1, 1000)]
    keys = {r[9] for r in records if r[9] is not None}
    if len(keys) == sum(r[9] is not None for r in records):  # no key repeated: nothing skipped
        assert len(stored) == 2 * len(records)
        for (record, ip), requested, outcome in zip(drawn, stored[::2], stored[1::2], strict=True):
            method, first, last, code, value, _, started, finished, trace, _ = record
            assert isinstance(requested, CalculationRequested)
            assert requested.calculation_id == outcome.calculation_id
            assert requested.event_id != outcome.event_id
            assert requested.method is (
                Method.SUMMATION if method == SUMMATION else Method.FACTORIAL
            )
            if method == SUMMATION:
                assert (requested.inputs.first, requested.inputs.last) == (first, last)
            else:
                assert requested.inputs.base == first
                assert requested.inputs.first is None
            assert requested.client_ip == ip
            assert requested.trace_id == trace
            assert requested.instance_id == outcome.instance_id == "pod-1"
            assert micros(requested.occurred_at) == started // 1000
            assert micros(outcome.occurred_at) == finished // 1000
            if code == 0:
                assert isinstance(outcome, CalculationSucceeded)
                assert outcome.result == value
            else:
                assert isinstance(outcome, CalculationFailed)
                assert outcome.message == value
                wanted = (
                    FailureCode.OUT_OF_RANGE
                    if code == OUT_OF_RANGE
                    else FailureCode.INVALID_ARGUMENT
                )
                assert outcome.code is wanted


@given(st.lists(call_records(), min_size=1, max_size=20), st.integers(0, 2**40))
def test_the_same_batch_sent_again_gets_the_same_ids(drawn: list[tuple], first_seq: int) -> None:
    records = [r for r, _ in drawn]
    once = rows_from_records(records, ORIGIN, first_seq, "a")
    again = rows_from_records(records, ORIGIN, first_seq, "a")
    assert [r[:2] for r in once] == [r[:2] for r in again]
    ids = [r[0] for r in once]
    keyed = [r for r in records if r[9] is not None]
    if len({(r[0], r[1], r[2], r[9]) for r in keyed}) == len(keyed):
        assert len(set(ids)) == len(ids)
    for row in once:
        event_id = uuid.UUID(bytes=row[0])
        assert event_id.variant == uuid.RFC_4122
        assert event_id.version in (4, 5)


def test_a_retried_call_with_an_idempotency_key_is_stored_once_wherever_it_lands() -> None:
    record = (SUMMATION, 2, 40, 0, 42, "ipv4:10.0.0.1:1", 1, 2, None, "order-7")
    store = InMemoryEventStore()
    store.append_rows(rows_from_records([record], uuid.uuid4().int, 0, "pod-a"))
    retry = (SUMMATION, 2, 40, 0, 42, "ipv4:10.0.0.9:9", 5, 6, None, "order-7")
    store.append_rows(rows_from_records([retry], uuid.uuid4().int, 99, "pod-b"))  # another server
    assert store.head() == 2
    other = (SUMMATION, 2, 41, 0, 43, "ipv4:10.0.0.1:1", 7, 8, None, "order-7")
    store.append_rows(rows_from_records([other], uuid.uuid4().int, 0, "pod-a"))
    assert store.head() == 4  # the same key with another request is another calculation


def test_without_a_key_records_of_different_processes_never_share_ids() -> None:
    record = (SUMMATION, 2, 40, 0, 42, "ipv4:10.0.0.1:1", 1, 2, None, None)
    rows = [
        row[0]
        for _ in range(50)
        for row in rows_from_records([record] * 20, uuid.uuid4().int, random.randrange(2**40), "x")
    ]
    assert len(set(rows)) == len(rows)


def test_a_domain_event_row_and_a_record_row_have_the_same_shape() -> None:
    record = (FACTORIAL, 5, None, 0, 120, "ipv4:1.2.3.4:5", 10**18, 10**18, None, None)
    from_record = rows_from_records([record], ORIGIN, 0, "x")[1]
    store = InMemoryEventStore()
    store.append_rows([from_record])
    event = store.read(1, 1)[0].event
    assert to_row(event) == from_record


def test_peers_of_every_transport_map_to_an_ip_or_none() -> None:
    assert client_ip("ipv4:127.0.0.1:5000") == "127.0.0.1"
    assert client_ip("ipv6:[fe80::1%25eth0]:1") == "fe80::1"
    assert client_ip("unix:/run/x") is None
    assert client_ip("ipv4:not-an-ip:1") is None
