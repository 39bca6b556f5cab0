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
from tests.support.webhook_server import WebhookReceiver, webhook_receiver

WATCHED = "203.0.113.7"


def wait_until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def reactor_for(
    store: InMemoryEventStore,
    url: str | None,
    attempts: int = 5,
    timeout_s: float = 2,
    backoff: Backoff | None = None,
) -> WatchListReactor:
    client = (
        WebhookClient(
            url,
            timeout_s=timeout_s,
            max_attempts=attempts,
            backoff=backoff or Backoff(base=0.01, cap=0.05),
        )
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


def only_posts_to_the_hook(receiver: WebhookReceiver) -> bool:
    return all((r.method, r.path) == ("POST", "/hooks/ori") for r in receiver.requests())


def delivery_failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Log lines at INFO or above about failed webhook attempts, from any oriserver logger."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.INFO
        and r.name.startswith("oriserver")
        and "webhook" in f"{r.getMessage()} {getattr(r, 'error', '')}"
    ]


@pytest.mark.parametrize("status", [302, 307, 308])
def test_a_redirect_is_a_failed_delivery_retried_until_the_receiver_accepts(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oriserver")
    store = InMemoryEventStore()
    with webhook_receiver(fail_first=4, fail_status=status, location="/other") as receiver:
        reactor = started_at_head(store, reactor_for(store, receiver.url, attempts=3))
        first, second = calculation(client_ip=WATCHED), calculation(client_ip=WATCHED)
        store.append([*first, *second])
        reactor.wake()
        wait_until(lambda: len(receiver.received) == 2)
        reactor.stop()
    assert receiver.delivered_keys() == [str(first[0].event_id), str(second[0].event_id)]
    assert only_posts_to_the_hook(receiver), receiver.requests()  # never a GET, never /other
    assert len(receiver.requests()) == 6
    assert reactor.stats.rejected == 0
    assert reactor.stats.failures == 1  # three attempts, one pause, then accepted
    assert store.load_checkpoint(reactor.name) == store.head()
    lines = delivery_failure_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]  # one line per pause, not per attempt
    assert lines[0].levelno == logging.WARNING
    assert "failed 3 times" in lines[0].error  # type: ignore[attr-defined]
    assert f"HTTP {status}" in lines[0].error  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [302, 307, 308])
def test_a_redirect_to_another_host_sends_it_nothing(status: int) -> None:
    store = InMemoryEventStore()
    with webhook_receiver() as elsewhere:
        other_host = elsewhere.url.replace("127.0.0.1", "localhost")
        with webhook_receiver(fail_first=2, fail_status=status, location=other_host) as receiver:
            reactor = started_at_head(store, reactor_for(store, receiver.url, attempts=5))
            requested, outcome = calculation(client_ip=WATCHED)
            store.append([requested, outcome])
            reactor.wake()
            wait_until(lambda: len(receiver.received) == 1)
            reactor.stop()
    assert elsewhere.requests() == []
    assert receiver.delivered_keys() == [str(requested.event_id)]
    assert only_posts_to_the_hook(receiver)


@pytest.mark.parametrize(
    "status", [408, 425, 429, 500, 501, 502, 503, 504, 505, 507, 511, 301, 302, 303, 307, 308]
)
def test_these_statuses_are_retried(status: int) -> None:
    store = InMemoryEventStore()
    with webhook_receiver(fail_first=1, fail_status=status, location="/other") as receiver:
        reactor = started_at_head(store, reactor_for(store, receiver.url))
        requested, outcome = calculation(client_ip=WATCHED)
        store.append([requested, outcome])
        reactor.wake()
        wait_until(lambda: len(receiver.received) == 1)
        reactor.stop()
    assert receiver.delivered_keys() == [str(requested.event_id)]
    assert (reactor.stats.retries, reactor.stats.rejected) == (1, 0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 415, 422])
def test_these_statuses_dead_letter_the_notification(status: int) -> None:
    store = InMemoryEventStore()
    with webhook_receiver(fail_first=1, fail_status=status) as receiver:
        reactor = started_at_head(store, reactor_for(store, receiver.url))
        rejected, followed = calculation(client_ip=WATCHED), calculation(client_ip=WATCHED)
        store.append([*rejected, *followed])
        reactor.wake()
        wait_until(lambda: len(receiver.received) == 1)
        reactor.stop()
    assert receiver.delivered_keys() == [str(followed[0].event_id)]
    assert (reactor.stats.retries, reactor.stats.rejected) == (0, 1)


def test_a_hanging_receiver_times_out_is_retried_and_gets_the_notification_later() -> None:
    store = InMemoryEventStore()
    with webhook_receiver() as receiver:
        receiver.hang.set()
        reactor = started_at_head(
            store, reactor_for(store, receiver.url, attempts=2, timeout_s=0.3)
        )
        requested, outcome = calculation(client_ip=WATCHED)
        store.append([requested, outcome])
        reactor.wake()
        wait_until(lambda: len(receiver.requests()) >= 3)  # two attempts, a pause, another
        assert reactor.stats.retries >= 1
        assert reactor.stats.failures >= 1
        assert store.load_checkpoint(reactor.name) == 0  # still waiting on the event
        receiver.hang.clear()
        wait_until(lambda: len(receiver.received) == 1)
        reactor.stop()
    assert receiver.delivered_keys() == [str(requested.event_id)]
    assert {r.idempotency_key for r in receiver.requests()} == {str(requested.event_id)}
    assert store.load_checkpoint(reactor.name) == store.head()


@pytest.mark.parametrize("moment", ["while a POST hangs", "while waiting to retry"])
def test_a_reactor_stuck_on_a_hanging_receiver_stops_promptly(moment: str) -> None:
    store = InMemoryEventStore()
    with webhook_receiver() as receiver:
        receiver.hang.set()
        reactor = started_at_head(
            store,
            reactor_for(
                store, receiver.url, attempts=5, timeout_s=1, backoff=Backoff(base=8, cap=8)
            ),
        )
        store.append(list(calculation(client_ip=WATCHED)))
        reactor.wake()
        if moment == "while a POST hangs":
            wait_until(lambda: len(receiver.requests()) == 1)
        else:
            wait_until(lambda: reactor.stats.retries == 1)  # the first timeout is behind it
        started = time.monotonic()
        reactor.stop()
        stopped_in = time.monotonic() - started
    assert stopped_in < 3.0  # at most the 1 s POST timeout, never the 8 s retry wait
    assert store.load_checkpoint(reactor.name) == 0  # nothing skipped
    assert [r.method for r in receiver.requests()] == ["POST"] * len(receiver.requests())
