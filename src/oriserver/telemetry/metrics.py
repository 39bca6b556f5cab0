"""The Prometheus metrics oriserver exports, created in the composition root.

Per-RPC metrics are updated inline (a counter and a histogram, label children
cached per method and code). Everything else (the writer, the projection, the
reactor, calls in flight) keeps plain counters in its own stats object, which
``Sampler`` copies into these metrics once a second, so background threads and
the hot path never touch prometheus_client.

With several worker processes prometheus_client's multiprocess mode stores the
values in files that the supervisor sums at scrape time; the gauge modes below
say how each gauge combines across processes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from oriserver import __version__
from oriserver._generated.ori.events.v1 import events_pb2

EVENTS_METHODS = tuple(
    m.name for m in events_pb2.DESCRIPTOR.services_by_name["EventsService"].methods
)

RPC_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def worker_restarts(registry: CollectorRegistry | None) -> Counter:
    """The supervisor's one metric; it creates only this, so that its own process adds
    no zero-valued gauges to the workers' sums and minimums."""
    return Counter(
        "ori_worker_restarts",
        "Worker processes restarted after an unexpected exit.",
        registry=registry,
    )


def split_method(full_method: str) -> tuple[str, str]:
    """'/MathHelper/Summation' -> ('MathHelper', 'Summation')."""
    _, service, method = (
        full_method.split("/", 2) if full_method.count("/") == 2 else ("", "", full_method)
    )
    return service, method


class Metrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.rpc_handled = Counter(
            "ori_rpc_handled",
            "RPCs finished, by service, method and status code.",
            ["service", "method", "code"],
            registry=r,
        )
        self.rpc_duration = Histogram(
            "ori_rpc_duration_seconds",
            "Time from a call's arrival to its status.",
            ["service", "method"],
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.rpc_in_flight = Gauge(
            "ori_rpc_in_flight",
            "Calls being handled now.",
            ["service", "method"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.events_buffered = Gauge(
            "ori_events_buffered",
            "Events waiting in memory to be written.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.events_capacity = Gauge(
            "ori_events_buffer_capacity",
            "Events the buffer holds at most.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.events_appended = Counter(
            "ori_events_appended", "Events committed to the event store.", registry=r
        )
        self.events_dropped = Counter(
            "ori_events_dropped",
            "Events not recorded because the buffer was full (async mode).",
            registry=r,
        )
        self.events_rejected = Counter(
            "ori_events_rejected",
            "Events of calls refused because the store was unavailable (sync mode).",
            registry=r,
        )
        self.flush_duration = Histogram(
            "ori_events_flush_duration_seconds",
            "Time to write one batch.",
            buckets=FLUSH_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "ori_events_batch_size", "Events per written batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.last_flush = Gauge(
            "ori_events_last_flush_timestamp_seconds",
            "Unix time the writer was last up to date: now while nothing waits, else its last successful write.",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.store_up = Gauge(
            "ori_events_store_up",
            "1 while the event store is reachable, 0 otherwise.",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.head = Gauge(
            "ori_log_head_position",
            "The highest position in the event log.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.checkpoint = Gauge(
            "ori_projection_checkpoint_position",
            "The last log position a projection has applied.",
            ["projection"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.lag = Gauge(
            "ori_projection_lag_events",
            "Events in the log a projection has not applied yet.",
            ["projection"],
            multiprocess_mode="livemin",
            registry=r,
        )
        self.notifications = Counter(
            "ori_reactor_notifications",
            "Notifications a reactor produced.",
            ["reactor"],
            registry=r,
        )
        self.deliveries = Counter(
            "ori_reactor_deliveries", "Notifications a webhook accepted.", ["reactor"], registry=r
        )
        self.retries = Counter(
            "ori_reactor_delivery_retries",
            "Webhook attempts that failed and were retried.",
            ["reactor"],
            registry=r,
        )
        self.failures = Counter(
            "ori_reactor_delivery_failures",
            "Notifications given up for now (all attempts failed) or rejected.",
            ["reactor"],
            registry=r,
        )
        self.subscriptions = Gauge(
            "ori_subscriptions_active",
            "Live SubscribeEvents streams.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.worker_restarts = Counter(
            "ori_worker_restarts",
            "Worker processes restarted after an unexpected exit.",
            registry=r,
        )
        self.access_refusals = Counter(
            "ori_events_api_refusals",
            "Events-API calls refused before they ran, by method and status code "
            "(UNAUTHENTICATED: no token; PERMISSION_DENIED: wrong token, name or network).",
            ["method", "code"],
            registry=r,
        )
        for method in EVENTS_METHODS:  # at 0 from the start, so increase() sees the first one
            for code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
                self.access_refusals.labels(method, code)
        self.build_info = Gauge(
            "ori_build_info",
            "Always 1; the version is in the label.",
            ["version"],
            multiprocess_mode="max",
            registry=r,
        )
        self.build_info.labels(__version__).set(1)
        self._rpc_children: dict[tuple[str, object], tuple[Counter, Histogram]] = {}

    def rpc_finished(self, full_method: str, code: object, seconds: float) -> None:
        """``code`` is a grpc.StatusCode (its name is the label)."""
        children = self._rpc_children.get((full_method, code))
        if children is None:
            service, method = split_method(full_method)
            name = str(getattr(code, "name", code))
            children = (
                self.rpc_handled.labels(service, method, name),
                self.rpc_duration.labels(service, method),
            )
            self._rpc_children[(full_method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def access_refused(self, full_method: str, code: object) -> None:
        """One events-API call refused by the access rules (rpc/access_guard.py)."""
        _, method = split_method(full_method)
        self.access_refusals.labels(method, str(getattr(code, "name", code))).inc()
