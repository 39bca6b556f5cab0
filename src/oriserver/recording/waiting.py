"""What the shipper keeps per buffered call, and its counters."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from oriserver.service.calls import CallRecord

EVENTS_PER_CALL = 2


class Waiter:
    """A sync call waiting for its batch: a lock released when the outcome is known."""

    __slots__ = ("error", "lock", "shipped", "withdrawn")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.error: BaseException | None = None
        self.shipped = False
        self.withdrawn = False

    def settle(self, error: BaseException | None) -> None:
        self.error = error
        self.lock.release()


Entry = tuple[CallRecord, Waiter | None]


@dataclass
class ShipperStats:
    """Counters in events. Written by the shipper thread, or under its lock; read anywhere."""

    appended: int = 0  # confirmed in the store (written now, or by an earlier attempt)
    already_stored: int = 0  # of those, found there already: a batch sent again, a keyed retry
    dropped: int = 0
    rejected: int = 0  # sync calls refused because nothing could be committed
    lost_at_shutdown: int = 0
    flushes: int = 0
    last_batch_size: int = 0
    flush_seconds_total: float = 0.0
    last_success_wall: float | None = None
    available: bool | None = None  # None until the first answer from the store
    unavailable_since: float | None = None
