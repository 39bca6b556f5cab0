"""The ori.events.v1 servicer: totals, paged history and live subscriptions, read-only."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from oriserver._generated.ori.events.v1 import events_pb2 as pb
from oriserver._generated.ori.events.v1 import events_pb2_grpc as pb_grpc
from oriserver.config.api import ApiSettings
from oriserver.errors import StoreError
from oriserver.rpc import event_mapping
from oriserver.rpc.status import status_for
from oriserver.service.log_watcher import LogWatcher
from oriserver.store.base import EventStore, ReadFilter

Context = grpc.aio.ServicerContext[Any, Any]
SUBSCRIBE_PAGE = 500


async def _filter(method: Any, event_type: Any, context: Context) -> ReadFilter:
    try:
        return ReadFilter(
            event_mapping.method_filter(method), event_mapping.type_filter(event_type)
        )
    except ValueError as error:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


class EventsServicer(pb_grpc.EventsServiceServicer):
    def __init__(self, store: EventStore, watcher: LogWatcher, limits: ApiSettings) -> None:
        self._store = store
        self._watcher = watcher
        self._limits = limits
        self.active_subscriptions = 0

    async def GetRunningTotals(  # noqa: N802 - wire name
        self, request: pb.GetRunningTotalsRequest, context: Context
    ) -> pb.GetRunningTotalsResponse:
        try:
            totals, checkpoint = await asyncio.to_thread(self._store.load_totals)
            head = await asyncio.to_thread(self._store.head)
        except StoreError as error:
            await context.abort(*status_for(error))
        return event_mapping.totals_message(totals, checkpoint, head)

    async def ListEvents(  # noqa: N802 - wire name
        self, request: pb.ListEventsRequest, context: Context
    ) -> pb.ListEventsResponse:
        if request.from_position < 0 or request.page_size < 0:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "from_position and page_size must not be negative"
            )
        where = await _filter(request.method, request.type, context)
        size = min(request.page_size or self._limits.default_page_size, self._limits.max_page_size)
        start = max(request.from_position, 1)
        try:
            head = await asyncio.to_thread(self._store.head)
            page = await asyncio.to_thread(self._store.read, start, size, where)
        except StoreError as error:
            await context.abort(*status_for(error))
        next_from = page[-1].position + 1 if page else max(start, head + 1)
        if page and len(page) < size:
            next_from = max(next_from, head + 1)
        return pb.ListEventsResponse(
            events=[event_mapping.event_message(e) for e in page],
            next_from_position=next_from,
            head_position=max(head, page[-1].position if page else 0),
        )

    # Streams with context.write() rather than yield, so that each write can time out.
    async def SubscribeEvents(  # type: ignore[override]  # noqa: N802 - wire name
        self, request: pb.SubscribeEventsRequest, context: Context
    ) -> None:
        if request.from_position < 0:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "from_position must not be negative"
            )
        where = await _filter(request.method, request.type, context)
        if self.active_subscriptions >= self._limits.max_subscriptions:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many live subscriptions on this instance ({self._limits.max_subscriptions}); retry later",
            )
        self.active_subscriptions += 1
        try:
            await self._stream(max(request.from_position, 1), where, context)
        finally:
            self.active_subscriptions -= 1

    async def _stream(self, position: int, where: ReadFilter, context: Context) -> None:
        timeout = self._limits.subscriber_write_timeout_s
        while True:
            scanned_to = self._watcher.head  # committed, so the read below sees all of it
            try:
                page = await asyncio.to_thread(self._store.read, position, SUBSCRIBE_PAGE, where)
            except StoreError as error:
                await context.abort(*status_for(error))
            for stored in page:
                reply = pb.SubscribeEventsResponse(event=event_mapping.event_message(stored))
                try:
                    await asyncio.wait_for(context.write(reply), timeout)
                except TimeoutError:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"subscriber too slow: no event accepted for {timeout:g}s; "
                        f"resubscribe with from_position={stored.position}",
                    )
            if page:
                position = page[-1].position + 1
            if len(page) == SUBSCRIBE_PAGE:
                continue
            position = max(position, scanned_to + 1)
            await self._watcher.wait_beyond(position - 1, timeout_s=30)
