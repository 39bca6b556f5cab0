"""The watch-list reactor: a WARNING (and a webhook POST) per request from a watched address.

Delivery is at least once: the checkpoint moves past an event only after its
notification was logged and, when a webhook is set, accepted by the receiver.
A receiver that keeps failing (any 5xx or 3xx, 408, 425, 429, a timeout, no
connection) pauses the reactor on that event instead of skipping it: one
WARNING per pause, rate-limited, with the attempt count; the attempts
themselves are DEBUG lines. One that rejects a payload outright (any other
4xx) gets it logged in full as dead-lettered, then the reactor moves on. The
first time the reactor runs it starts at the head of the log: enabling a
watch list does not notify about the past.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from oriserver.domain.watchlist import WatchList, decide
from oriserver.errors import StoreError
from oriserver.reactors.webhook import Outcome, WebhookClient
from oriserver.service.background import LeasedWorker
from oriserver.service.ports import EventStore

log = logging.getLogger("oriserver.reactors.watchlist")

PAGE = 500


@dataclass(frozen=True, slots=True)
class ReactorStats:
    """A snapshot, replaced as the reactor works: safe to read from any thread."""

    notifications: int = 0
    deliveries: int = 0
    retries: int = 0
    failures: int = 0
    rejected: int = 0
    checkpoint: int = 0


class DeliveryPaused(StoreError):
    """The webhook kept failing; the reactor retries the same event after a pause."""


class WatchListReactor(LeasedWorker):
    name = "reactor:watchlist"

    def __init__(
        self,
        store: EventStore,
        holder: str,
        interval_s: float,
        watch_list: WatchList,
        webhook: WebhookClient | None,
    ) -> None:
        super().__init__(store, holder, interval_s, lease_ttl_s=60.0)
        self._store = store
        self._watch_list = watch_list
        self._webhook = webhook
        self.stats = ReactorStats()

    def _count(self, counter: str) -> None:
        self.stats = replace(self.stats, **{counter: getattr(self.stats, counter) + 1})

    def step(self) -> bool:
        checkpoint = self._store.load_checkpoint(self.name)
        if checkpoint is None:
            checkpoint = self._store.head()
            self._store.save_checkpoint(self.name, checkpoint)
        events = self._store.read(checkpoint + 1, PAGE)
        for stored in events:
            notification = decide(self._watch_list, stored.event)
            if notification is not None:
                self._notify(notification.as_payload(), str(stored.event.event_id))
                self._store.save_checkpoint(self.name, stored.position)
        if events:
            self._store.save_checkpoint(self.name, events[-1].position)
            self.stats = replace(self.stats, checkpoint=events[-1].position)
        return len(events) == PAGE

    def _notify(self, payload: dict[str, object], event_id: str) -> None:
        log.warning("watched address requested a calculation", extra={"notification": payload})
        self._count("notifications")
        if self._webhook is None:
            return
        delivery = self._webhook.deliver(payload, event_id, self._before_retry)
        if delivery.outcome is Outcome.DELIVERED:
            self._count("deliveries")
            return
        self._count("failures")
        if delivery.outcome is Outcome.REJECTED:
            self._count("rejected")
            log.error(
                "webhook rejected a notification; dead-lettered here",
                extra={"detail": delivery.detail, "notification": payload},
            )
            return
        # The worker logs this once per pause (rate-limited) and retries the same event.
        raise DeliveryPaused(
            f"webhook failed {delivery.attempts} times for event {event_id} "
            f"({delivery.detail}); paused, will retry"
        )

    def _before_retry(self, attempt: int, reason: str, delay_s: float) -> bool:
        """Wait before the next attempt; give up at once when asked to stop or the lease is lost."""
        self._count("retries")
        log.debug("webhook attempt failed", extra={"attempt": attempt, "reason": reason})
        if self._stop.wait(delay_s):  # set by stop(): a retry wait must not delay shutdown
            return False
        return self.renew_lease()
