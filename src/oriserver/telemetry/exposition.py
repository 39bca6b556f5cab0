"""Serves /metrics over plain HTTP with prometheus_client's own server."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server


class MetricsBindError(Exception):
    """The metrics port could not be opened."""


def process_registry() -> CollectorRegistry:
    """A registry for one server process, with the standard process metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


def multiprocess_registry() -> CollectorRegistry:
    """A registry that sums the values every worker process wrote (the supervisor serves it)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise MetricsBindError(f"cannot serve metrics on {host}:{port}: {error.strerror}") from None
    return MetricsServer(server, thread)
