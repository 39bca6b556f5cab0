"""The ori.events.v1 servicer: totals, paged history and live subscriptions, read-only.

Readers must not starve callers. Reading a page (and the log's start) and turning it
into messages is CPU work under the GIL, so it is done in chunks and by one reader at a
time (the read permit): a hundred subscribers catching up from position 0 then take
turns on one thread's worth of CPU, and calculations still get theirs. Sending
happens outside the permit, so a slow client never holds it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

import grpc

from oriserver._generated.ori.events.v1 import events_pb2 as pb
from oriserver._generated.ori.events.v1 import events_pb2_grpc as pb_grpc
from oriserver.config.api import ApiSettings
from oriserver.errors import StoreError
from oriserver.rpc import event_mapping
from oriserver.rpc.engines import CallEnder
from oriserver.rpc.status import status_for
from oriserver.service.log_watcher import LogWatcher
from oriserver.service.ports import EventLog, ReadFilter, TotalsStore

CHUNK = 20  # events read, converted and sent per turn of the read permit and a send lane
# Subscribers that send a chunk at the same time. Sending is Python work (each reply is
# serialized and handed to the engine while holding the GIL), so a hundred subscribers
# catching up at once would each compete with the calculation threads for the GIL and
# push their latency up tenfold. Two at a time keep the log streaming at full speed
# while calculations wait for at most two other runnable threads. A subscriber stuck
# in a send holds its lane until the slow-subscriber guard ends its call.
SENDING_AT_ONCE = 2
IDLE_WAIT_S = 1.0  # a caught-up subscription looks at its call this often
# How stale a subscription's first_position may be when its reads cannot have skipped anything.
FIRST_POSITION_REFRESH_S = 1.0


class EventReader(EventLog, TotalsStore, Protocol):
    """What the servicer reads: the log and the totals."""


def _archived(position: int, first: int) -> str:
    return (
        f"position {position} is no longer in the log: events below position {first} were "
        f"archived; the retained log begins at position {first}"
    )


def _check_retained(position: int, store: EventLog, context: grpc.ServicerContext) -> int:
    """The log's first position, after aborting with OUT_OF_RANGE if it is past ``position``.
    Called after a read from ``position``: if the start has not passed it by now, the
    read (earlier) skipped nothing, since removal only ever moves the start forward."""
    first = store.first_position()
    if first > position:
        context.abort(grpc.StatusCode.OUT_OF_RANGE, _archived(position, first))
    return first


def _filter(
    request: pb.ListEventsRequest | pb.SubscribeEventsRequest, context: grpc.ServicerContext
) -> ReadFilter:
    try:
        return ReadFilter(
            event_mapping.method_filter(request.method), event_mapping.type_filter(request.type)
        )
    except ValueError as error:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


class _SlowSubscribers:
    """Ends subscriptions whose client has accepted nothing for ``timeout_s``."""

    def __init__(self, timeout_s: float, end_call: CallEnder) -> None:
        self._timeout_s = timeout_s
        self._end_call = end_call
        self._lock = threading.Lock()
        self._sending: dict[int, tuple[grpc.ServicerContext, float, int]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def sending(self, context: grpc.ServicerContext, position: int) -> None:
        with self._lock:
            self._sending[id(context)] = (context, time.monotonic(), position)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="slow-subscribers", daemon=True
                )
                self._thread.start()

    def sent(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            self._sending.pop(id(context), None)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(min(0.25, self._timeout_s / 4)):
            now = time.monotonic()
            with self._lock:
                stalled = [v for v in self._sending.values() if now - v[1] > self._timeout_s]
                for context, _, _ in stalled:
                    self._sending.pop(id(context), None)
            for context, _, position in stalled:
                self._end_call(
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"subscriber too slow: no event accepted for {self._timeout_s:g}s; "
                    f"resubscribe with from_position={position}",
                )


class EventsServicer(pb_grpc.EventsServiceServicer):
    def __init__(
        self,
        store: EventReader,
        watcher: LogWatcher,
        limits: ApiSettings,
        end_call: CallEnder,
        read_permit: AbstractContextManager[object] | None = None,
    ) -> None:
        self._store = store
        self._watcher = watcher
        self._limits = limits
        self._permit = read_permit or threading.BoundedSemaphore(1)
        self._lanes = threading.BoundedSemaphore(SENDING_AT_ONCE)
        self._slow = _SlowSubscribers(limits.subscriber_write_timeout_s, end_call)
        self._admission = threading.Lock()
        self.active_subscriptions = 0

    def close(self) -> None:
        self._slow.stop()

    def GetRunningTotals(  # noqa: N802 - wire name
        self, request: pb.GetRunningTotalsRequest, context: grpc.ServicerContext
    ) -> pb.GetRunningTotalsResponse:
        try:
            totals, checkpoint = self._store.load_totals()
            head = self._store.head()
        except StoreError as error:
            context.abort(*status_for(error))
        return event_mapping.totals_message(totals, checkpoint, head)

    def ListEvents(  # noqa: N802 - wire name
        self, request: pb.ListEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListEventsResponse:
        if request.from_position < 0 or request.page_size < 0:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "from_position and page_size must not be negative"
            )
        where = _filter(request, context)
        size = min(request.page_size or self._limits.default_page_size, self._limits.max_page_size)
        messages: list[pb.Event] = []
        try:
            first = self._store.first_position()
            if 0 < request.from_position < first:
                context.abort(grpc.StatusCode.OUT_OF_RANGE, _archived(request.from_position, first))
            start = max(request.from_position, first)
            head = self._store.head()
            position, last = start, 0
            while len(messages) < size:
                want = min(CHUNK, size - len(messages))
                with self._permit:
                    page = self._store.read(position, want, where)
                    messages.extend(event_mapping.event_message(e) for e in page)
                if page:
                    last = page[-1].position
                    position = last + 1
                if len(page) < want:
                    break
            first = _check_retained(start, self._store, context)
        except StoreError as error:
            context.abort(*status_for(error))
        next_from = last + 1 if messages else max(start, head + 1)
        if messages and len(messages) < size:
            next_from = max(next_from, head + 1)
        return pb.ListEventsResponse(
            events=messages,
            next_from_position=next_from,
            head_position=max(head, last),
            first_position=first,
        )

    def SubscribeEvents(  # noqa: N802 - wire name
        self, request: pb.SubscribeEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.SubscribeEventsResponse]:
        if request.from_position < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "from_position must not be negative")
        where = _filter(request, context)
        with self._admission:
            admitted = self.active_subscriptions < self._limits.max_subscriptions
            if admitted:
                self.active_subscriptions += 1
        if not admitted:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many live subscriptions on this instance ({self._limits.max_subscriptions}); retry later",
            )
        try:
            yield from self._stream(request.from_position, where, context)
        finally:
            self._slow.sent(context)
            with self._admission:
                self.active_subscriptions -= 1

    def _stream(
        self, position: int, where: ReadFilter, context: grpc.ServicerContext
    ) -> Iterator[pb.SubscribeEventsResponse]:
        try:
            if position == 0:  # from the beginning of the retained log
                # Under the permit too: a hundred subscriptions opened at once would otherwise
                # query together, and their burst is what calculations waited behind.
                with self._permit:
                    position = self._store.first_position()
        except StoreError as error:
            context.abort(*status_for(error))
        first, checked = 0, -FIRST_POSITION_REFRESH_S
        while context.is_active() and not self._watcher.closed:
            scanned_to = self._watcher.head  # committed, so the read below sees all of it
            try:
                with self._permit:
                    page = self._store.read(position, CHUNK, where)
                # Removal only ever cuts a prefix of the log, so a page that begins at the
                # position asked for skipped nothing, and one that is empty above the head
                # had nothing to skip: only otherwise (or now and then, to keep first_position
                # fresh) is the start read again. That halves a catching-up reader's queries.
                contiguous = page[0].position == position if page else position > scanned_to
                now = time.monotonic()
                with self._permit:
                    if not contiguous or now - checked >= FIRST_POSITION_REFRESH_S:
                        first, checked = _check_retained(position, self._store, context), now
                    replies = [
                        pb.SubscribeEventsResponse(
                            event=event_mapping.event_message(e), first_position=first
                        )
                        for e in page
                    ]
            except StoreError as error:
                context.abort(*status_for(error))
            with self._lanes:
                for stored, reply in zip(page, replies, strict=True):
                    self._slow.sending(context, stored.position)
                    yield reply
            self._slow.sent(context)
            if page:
                position = page[-1].position + 1
            if len(page) == CHUNK:
                continue
            position = max(position, scanned_to + 1)
            self._watcher.wait_beyond(position - 1, timeout_s=IDLE_WAIT_S)
