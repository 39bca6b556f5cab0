"""Call records as the serving path hands them to recording, and a real sink for them."""

from __future__ import annotations

import itertools
import time

from oriserver.eventhost.client import InlineHost
from oriserver.eventhost.host import EventHost
from oriserver.service.calls import FACTORIAL, INVALID_ARGUMENT, SUCCEEDED, SUMMATION, CallRecord
from oriserver.service.ports import EventStore
from oriserver.service.projection import ProjectionRunner

_counter = itertools.count(1)


def summation_record(
    first: int = 1, last: int = 2, *, peer: str = "ipv4:127.0.0.1:5000", key: str | None = None
) -> CallRecord:
    now = time.time_ns()
    return (SUMMATION, first, last, SUCCEEDED, first + last, peer, now, now + 1000, None, key)


def failed_factorial_record(base: int = -1) -> CallRecord:
    now = time.time_ns()
    message = "factorial is undefined for negative numbers"
    return (FACTORIAL, base, None, INVALID_ARGUMENT, message, "ipv6:[::1]:1", now, now, None, None)


def records(count: int) -> list[CallRecord]:
    """``count`` distinct summation records."""
    return [summation_record(next(_counter), 1) for _ in range(count)]


def inline_sink(store: EventStore, instance_id: str = "test") -> InlineHost:
    """The event host in this process over ``store`` (its projection runs when started)."""
    projection = ProjectionRunner(store, f"{instance_id}/test", interval_s=0.05)
    return InlineHost(EventHost(store, instance_id, projection))
