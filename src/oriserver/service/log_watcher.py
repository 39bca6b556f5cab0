"""Tells live subscriptions when the log grows, whichever instance wrote to it.

One poll of ``head()`` per interval serves every subscriber in the process; a
local flush wakes the poller at once, so events written here stream without
waiting for the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from oriserver.errors import StoreError
from oriserver.recording.backoff import RateLimit
from oriserver.store.base import EventLog

log = logging.getLogger("oriserver.events.watcher")


class LogWatcher:
    def __init__(
        self,
        store: EventLog,
        interval_s: float,
        on_availability: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._interval_s = interval_s
        self._on_availability = on_availability
        self._changed = asyncio.Condition()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warnings = RateLimit(30.0)
        self.head = 0
        self.available: bool | None = None
        self._waiting = 0  # subscriptions waiting for new events

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._poll(), name="log-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def poke_threadsafe(self) -> None:
        """Called from the writer thread after a flush; free when nobody is subscribed."""
        if self._waiting and self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._poke.set)
            except RuntimeError:
                return

    async def wait_beyond(self, position: int, timeout_s: float) -> bool:
        """Wait until the head passes position (True) or the timeout ends (False)."""
        self._waiting += 1
        try:
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self.head > position), timeout_s
                    )
                except TimeoutError:
                    return False
            return True
        finally:
            self._waiting -= 1

    async def _poll(self) -> None:
        while True:
            try:
                head = await asyncio.to_thread(self._store.head)
            except StoreError as error:
                await self._set_available(False, str(error))
            else:
                await self._set_available(True, "")
                if head != self.head:
                    async with self._changed:
                        self.head = head
                        self._changed.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._interval_s)
            self._poke.clear()

    async def _set_available(self, available: bool, reason: str) -> None:
        if available is self.available:
            return
        self.available = available
        if not available and self._warnings.allow():
            log.warning("event log unreadable; event queries will fail", extra={"error": reason})
        if self._on_availability is not None:
            await self._on_availability(available)
