"""What the scenarios watch: health, memory and descriptors, the event host, the events table.

Servers come from the one launcher, ``harness/servers.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import grpc
import psutil
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.load import channel

LOOPBACK = {"localhost", "127.0.0.1", "::1"}
EVENTS_SERVICE = "ori.events.v1.EventsService"
MATH_SERVICE = "MathHelper"


def health_status(target: str, service: str = "", timeout: float = 1.0) -> str:
    """The health status name, or the gRPC error code's name if the check itself failed."""
    with channel(target) as chan:
        try:
            reply = health_pb2_grpc.HealthStub(chan).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


@dataclass
class HealthWatch:
    """Polls the overall and the events service's health every ``interval_s`` on one channel,
    and keeps each status with the time it was seen (time.monotonic())."""

    target: str
    interval_s: float = 0.05
    services: tuple[str, ...] = ("", EVENTS_SERVICE)
    timeout_s: float = 1.0  # per probe; a probe that takes longer is kept as DEADLINE_EXCEEDED
    seen: list[tuple[float, str, str]] = field(default_factory=list)  # (time, service, status)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthWatch:
        self._thread = threading.Thread(target=self._run, name="health-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        with channel(self.target) as chan:
            stub = health_pb2_grpc.HealthStub(chan)
            while not self._stop.is_set():
                for service in self.services:
                    try:
                        reply = stub.Check(
                            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout_s
                        )
                        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                    except grpc.RpcError as error:
                        status = error.code().name
                    self.seen.append((time.monotonic(), service, str(status)))
                self._stop.wait(self.interval_s)

    def first(
        self, service: str, status: str, since: float = 0.0, until: float = float("inf")
    ) -> float | None:
        """When ``service`` was first seen with ``status`` in [since, until)."""
        return next(
            (
                t
                for t, s, st in list(self.seen)
                if s == service and st == status and since <= t < until
            ),
            None,
        )

    def count(
        self, service: str, status: str, since: float = 0.0, until: float = float("inf")
    ) -> int:
        return sum(
            1 for t, s, st in list(self.seen) if (s, st) == (service, status) and since <= t < until
        )

    def statuses(self, service: str, since: float = 0.0, until: float = float("inf")) -> set[str]:
        return {st for t, s, st in list(self.seen) if s == service and since <= t < until}

    def wait_for(self, service: str, status: str, since: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (found := self.first(service, status, since)) is not None:
                return found
            time.sleep(self.interval_s / 2)
        return None


@dataclass(frozen=True)
class Resources:
    rss_bytes: int
    fds: int
    processes: int


def resources(pid: int) -> Resources:
    """Resident memory and open file descriptors of pid and all its descendants."""
    root = psutil.Process(pid)
    rss = fds = count = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            rss += process.memory_info().rss
            fds += process.num_fds()
            count += 1
    return Resources(rss, fds, count)


def stored_outcome_ids(database_url: str) -> set[int]:
    """Ids of the Summation calls whose outcome event is in the table now."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT input_first FROM events WHERE method = 'Summation' "
            "AND event_type <> 'CalculationRequested'"
        ).fetchall()
    return {int(row[0]) for row in rows}


def events_by_instance(database_url: str) -> dict[str, int]:
    """Summation events per recording instance (``<ORI_INSTANCE_ID>/w<index>`` for workers)."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT instance_id, count(*) FROM events WHERE method = 'Summation' "
            "GROUP BY instance_id ORDER BY instance_id"
        ).fetchall()
    return {str(name): int(n) for name, n in rows}


def wait_stored(database_url: str, ids: set[int], timeout: float) -> float | None:
    """Poll (directly, not through any proxy) until every call in ``ids`` has its outcome stored;
    returns when that was seen (time.monotonic()), or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if ids <= stored_outcome_ids(database_url):
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def require_loopback(database_url: str) -> None:
    """Refuse a PostgreSQL that is not on this machine: every load of the run stays on loopback."""
    parts = urlsplit(database_url)
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    host = unquote(query.get("host", "") or parts.hostname or "")
    if host and not host.startswith("/") and host not in LOOPBACK:
        raise ValueError(
            f"PostgreSQL at {host!r} is not on loopback; the reliability scenarios load only "
            "127.0.0.1, ::1 or a Unix socket"
        )


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
