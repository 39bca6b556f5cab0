"""Tells live subscriptions when the log grows, whichever instance wrote to it.

One poll of ``head()`` per interval serves every subscriber in the process and
finds what other instances wrote. A local append reports its committed head
(``advanced``), so events written here stream at once without a query: in sync
mode, where batches are small, a query per batch cost the serving process more
than the calls' own work. ``close`` wakes every waiter for good, so that
subscriptions end at shutdown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from oriserver.errors import StoreError
from oriserver.recording.backoff import RateLimit
from oriserver.service.ports import EventLog

log = logging.getLogger("oriserver.events.watcher")


class LogWatcher:
    def __init__(
        self,
        store: EventLog,
        interval_s: float,
        on_availability: Callable[[bool], None] | None = None,
    ) -> None:
        self._store = store
        self._interval_s = interval_s
        self._on_availability = on_availability
        self._changed = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="log-watcher", daemon=True)
        self._warnings = RateLimit(30.0)
        self._advances = 0  # local appends reported, so a poll can tell it answered late
        self.head = 0
        self.available: bool | None = None

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)

    def poke(self) -> None:
        """Query the head now rather than at the next interval. Safe from any thread."""
        self._wake.set()

    def advanced(self, head: int) -> None:
        """A local append committed up to head (a later poll may have passed it already).
        Safe from any thread."""
        with self._changed:
            self._advances += 1
            if head > self.head:
                self._set_head(head)

    def wait_beyond(self, position: int, timeout_s: float) -> bool:
        """Wait until the head passes position (True), or the timeout or close ends it."""
        with self._changed:
            return (
                self._changed.wait_for(
                    lambda: self.head > position or self._stop.is_set(), timeout_s
                )
                and self.head > position
            )

    def _poll(self) -> None:
        while not self._stop.is_set():
            advances = self._advances
            try:
                head = self._store.head()
            except StoreError as error:
                self._set_available(False, str(error))
            else:
                self._set_available(True, "")
                self._polled(head, advances)
            self._wake.wait(self._interval_s)
            self._wake.clear()

    def _polled(self, head: int, advances_before: int) -> None:
        """Take the store's head, even a lower one (a restored database may be behind us),
        unless a local append reported a newer head while the query ran."""
        with self._changed:
            late = advances_before != self._advances
            if head > self.head or (not late and head != self.head):
                self._set_head(head)

    def _set_head(self, head: int) -> None:
        """Called holding ``_changed``."""
        self.head = head
        self._changed.notify_all()

    def _set_available(self, available: bool, reason: str) -> None:
        if available is self.available:
            return
        self.available = available
        if not available and self._warnings.allow():
            log.warning("event log unreadable; event queries will fail", extra={"error": reason})
        if self._on_availability is not None:
            self._on_availability(available)
