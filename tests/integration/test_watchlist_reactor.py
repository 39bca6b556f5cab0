"""The watch-list reactor against a real HTTP server: at least once, with retries and keys."""

from __future__ import annotations

import logging
import time

import pytest

from oriserver.domain.watchlist import WatchList
from oriserver.reactors.watchlist import WatchListReactor
from oriserver.reactors.webhook import WebhookClient
from oriserver.recording.backoff import Backoff
from oriserver.store.memory import InMemoryEventStore
from tests.support.events import calculation
from tests.support.webhook_server import webhook_receiver

WATCHED = "203.0.113.7"


def wait_until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def reactor_for(store: InMemoryEventStore, url: str | None, attempts: int = 5) -> WatchListReactor:
    client = (
        WebhookClient(url, timeout_s=2, max_attempts=attempts, backoff=Backoff(base=0.01, cap=0.05))
        if url
        else None
    )
    return WatchListReactor(store, "test", 0.02, WatchList.parse("203.0.113.0/28"), client)


def started_at_head(store: InMemoryEventStore, reactor: WatchListReactor) -> WatchListReactor:
    reactor.start()
    wait_until(lambda: store.load_checkpoint(reactor.name) is not None)
    return reactor


def test_every_watched_request_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="oriserver.reactors")
    store = InMemoryEventStore()
    reactor = started_at_head(store, reactor_for(store, None))
    watched = [calculation(client_ip=WATCHED) for _ in range(3)]
    store.append(
        [e for pair in watched for e in pair] + list(calculation(client_ip="198.51.100.1"))
    )
    reactor.wake()
    wait_until(lambda: reactor.stats.notifications == 3)
    time.sleep(0.1)
    reactor.stop()
    warnings = [
        r for r in caplog.records if r.getMessage() == "watched address requested a calculation"
    ]
    assert [r.notification["event_id"] for r in warnings] == [str(p[0].event_id) for p in watched]  # type: ignore[attr-defined]
    assert all(r.levelno == logging.WARNING for r in warnings)


def test_the_webhook_gets_each_notification_with_the_event_id_as_key() -> None:
    store = InMemoryEventStore()
    with webhook_receiver() as receiver:
        reactor = started_at_head(store, reactor_for(store, receiver.url))
        pairs = [calculation(client_ip=WATCHED) for _ in range(4)]
        store.append([e for pair in pairs for e in pair])
        reactor.wake()
        wait_until(lambda: len(receiver.received) == 4)
        reactor.stop()
    assert receiver.delivered_keys() == [str(p[0].event_id) for p in pairs]
    assert receiver.received[0].content_type == "application/json"
    assert receiver.received[0].body["client_ip"] == WATCHED
    assert reactor.stats.deliveries == 4


def test_a_webhook_that_fails_several_times_first_still_gets_everything() -> None:
    store = InMemoryEventStore()
    with webhook_receiver(fail_first=3, fail_status=503) as receiver:
        reactor = started_at_head(store, reactor_for(store, receiver.url, attempts=5))
        pairs = [calculation(client_ip=WATCHED) for _ in range(2)]
        store.append([e for pair in pairs for e in pair])
        reactor.wake()
        wait_until(lambda: len(receiver.received) == 2)
        reactor.stop()
    assert receiver.attempts == 5
    assert receiver.delivered_keys() == [str(p[0].event_id) for p in pairs]
    assert reactor.stats.retries == 3


def test_a_webhook_down_longer_than_the_attempts_pauses_but_loses_nothing() -> None:
    store = InMemoryEventStore()
    with webhook_receiver(fail_first=7, fail_status=500) as receiver:
        reactor = started_at_head(store, reactor_for(store, receiver.url, attempts=2))
        requested, outcome = calculation(client_ip=WATCHED)
        store.append([requested, outcome])
        reactor.wake()
        wait_until(lambda: len(receiver.received) == 1, timeout=30)
        reactor.stop()
    assert reactor.stats.failures >= 3  # gave up several rounds, each time without moving on
    assert receiver.delivered_keys() == [str(requested.event_id)]
    assert store.load_checkpoint(reactor.name) == store.head()


def test_a_permanently_rejected_notification_is_dead_lettered_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryEventStore()
    with webhook_receiver(fail_first=1, fail_status=400) as receiver:
        reactor = started_at_head(store, reactor_for(store, receiver.url))
        first = calculation(client_ip=WATCHED)
        second = calculation(client_ip=WATCHED)
        store.append([*first, *second])
        reactor.wake()
        wait_until(lambda: len(receiver.received) == 1)
        reactor.stop()
    assert receiver.delivered_keys() == [str(second[0].event_id)]
    assert reactor.stats.rejected == 1
    dead = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert dead[0].notification["event_id"] == str(first[0].event_id)  # type: ignore[attr-defined]


def test_a_new_reactor_starts_at_the_head_instead_of_replaying_history() -> None:
    store = InMemoryEventStore()
    store.append(list(calculation(client_ip=WATCHED)))
    reactor = started_at_head(store, reactor_for(store, None))
    time.sleep(0.1)
    reactor.stop()
    assert reactor.stats.notifications == 0
    assert store.load_checkpoint(reactor.name) == 2


def test_a_restarted_reactor_continues_from_its_checkpoint() -> None:
    store = InMemoryEventStore()
    with webhook_receiver() as receiver:
        first = started_at_head(store, reactor_for(store, receiver.url))
        one = calculation(client_ip=WATCHED)
        store.append(list(one))
        first.wake()
        wait_until(lambda: len(receiver.received) == 1)
        first.stop()
        two = calculation(client_ip=WATCHED)
        store.append(list(two))
        second = reactor_for(store, receiver.url)
        second.start()
        wait_until(lambda: len(receiver.received) == 2)
        second.stop()
    assert receiver.delivered_keys() == [str(one[0].event_id), str(two[0].event_id)]
