"""Copies the components' plain counters into the Prometheus metrics once a second.

The components keep plain counters and frozen snapshots (the shipper's stats, the
event host's stats that arrive with every reply), so the serving path and the
background threads never touch prometheus_client; this thread does, once a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from oriserver.telemetry.metrics import Metrics, split_method


class ShipperView(Protocol):
    """What the sampler reads of the recording pipeline (recording/shipper.py)."""

    @property
    def stats(self) -> Any: ...
    @property
    def buffered(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    def drain_flushes(self) -> list[tuple[float, int]]: ...


@dataclass
class Sources:
    """What the sampler reads; every part is optional (recording may be off)."""

    in_flight: Callable[[], dict[str, int]] | None = None
    writer: ShipperView | None = None
    host: Callable[[], Any] | None = None  # the event host's HostStats (eventhost/messages.py)
    subscriptions: Callable[[], int] | None = None


@dataclass
class Sampler:
    metrics: Metrics
    sources: Sources
    interval_s: float = 1.0
    _last: dict[str, int] = field(default_factory=dict)
    _started: float = field(default_factory=time.time)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval_s):
                return

    def _delta(self, key: str, value: int) -> int:
        delta = value - self._last.get(key, 0)
        self._last[key] = value
        return max(delta, 0)

    def sample(self) -> None:
        m, s = self.metrics, self.sources
        if s.in_flight is not None:
            for full_method, count in list(s.in_flight().items()):
                m.rpc_in_flight.labels(*split_method(full_method)).set(count)
        if s.subscriptions is not None:
            m.subscriptions.set(s.subscriptions())
        if s.writer is not None:
            self._writer(s.writer)
        host = s.host() if s.host is not None else None
        if host is not None:
            progress = host.projection
            m.head.set(progress.head)
            m.checkpoint.labels("running_totals").set(progress.checkpoint)
            m.lag.labels("running_totals").set(progress.lag)
        if host is not None and host.reactor is not None:
            stats = host.reactor
            for name, counter in (
                ("notifications", m.notifications),
                ("deliveries", m.deliveries),
                ("retries", m.retries),
                ("failures", m.failures),
            ):
                counter.labels("watchlist").inc(
                    self._delta(f"reactor.{name}", getattr(stats, name))
                )

    def _writer(self, writer: ShipperView) -> None:
        m = self.metrics
        stats = writer.stats
        m.events_buffered.set(writer.buffered)
        m.events_capacity.set(writer.capacity)
        m.events_appended.inc(self._delta("appended", stats.appended))
        m.events_dropped.inc(self._delta("dropped", stats.dropped))
        m.events_rejected.inc(self._delta("rejected", stats.rejected))
        m.store_up.set(1 if stats.available else 0)
        for seconds, size in writer.drain_flushes():
            m.flush_duration.observe(seconds)
            m.batch_size.observe(size)
        # "Last up to date": now while nothing waits, else the last successful write (or the
        # start, before the first). time() minus it is how long buffered events have waited
        # at most, so an idle worker never looks stuck.
        up_to_date = (
            time.time() if writer.buffered == 0 else stats.last_success_wall or self._started
        )
        m.last_flush.set(up_to_date)
