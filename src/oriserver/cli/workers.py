"""``ORI_WORKERS=N``: a supervisor forks N server processes that share the gRPC port.

grpcio does not survive a fork once it has started threads, so this module
never imports grpc: the workers are forked from a parent that has parsed the
settings, reserved the port (SO_REUSEPORT) and nothing else; each worker then
builds its own server, event writer and background threads. The supervisor
forwards SIGTERM/SIGINT so that every worker drains and flushes, restarts a
worker that dies unexpectedly, gives up (exit 1) when they keep dying, and
serves /metrics summed over all workers (prometheus_client multiprocess mode).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

from oriserver.config import Settings

if TYPE_CHECKING:  # imported for real only after PROMETHEUS_MULTIPROC_DIR is set
    from prometheus_client import Counter

    from oriserver.telemetry.exposition import MetricsServer

log = logging.getLogger("oriserver.supervisor")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
RESTART_LIMIT = 5  # crashes tolerated within RESTART_WINDOW_S before giving up
RESTART_WINDOW_S = 60.0


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) with SO_REUSEPORT: fails fast if another program owns the
    port, resolves port 0 once for every worker, and keeps the port ours while they restart."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((bare, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


class Supervisor:
    def __init__(self, settings: Settings, port: int) -> None:
        self._settings = settings
        self._port = port
        self._context = multiprocessing.get_context("fork")
        self._workers: dict[int, BaseProcess] = {}
        self._crashes: deque[float] = deque()
        self._stopping = False
        self._failed = False
        self.restarts: Counter | None = None  # set when metrics are on

    def _settings_for(self, index: int) -> Settings:
        s = self._settings
        events = dataclasses.replace(
            s.events, auto_migrate=False
        )  # migrated once, by the supervisor
        return dataclasses.replace(
            s, port=self._port, instance_id=f"{s.instance_id}/w{index}", events=events
        )

    def _spawn(self, index: int) -> None:
        assert "grpc" not in sys.modules, "grpc must not be imported before the workers fork"
        # Signals stay blocked across the fork until the child has its own handlers;
        # otherwise the supervisor's handler, inherited by the child, could run there.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            # Looked at with the signals blocked: a stop that began after a crash was
            # reaped must not be followed by a new worker that nobody would tell to stop.
            if not self._stopping:
                self._start(index)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=_worker_main, args=(self._settings_for(index), index), name=f"worker-{index}"
        )
        process.start()
        self._workers[index] = process
        log.info("worker started", extra={"worker": index, "pid": process.pid})

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("stopping workers", extra={"signal": signal.Signals(signum).name})
        self._stopping = True
        for process in self._workers.values():
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        for index in range(self._settings.workers):
            self._spawn(index)
        deadline: float | None = None
        while self._workers:
            if self._stopping and deadline is None:
                deadline = (
                    time.monotonic()
                    + self._settings.shutdown_grace_s
                    + self._settings.events.shutdown_flush_s
                    + 15
                )
            if deadline is not None and time.monotonic() > deadline:
                self._kill_remaining()
            sentinels = {p.sentinel: i for i, p in self._workers.items()}
            for ready in wait(list(sentinels), timeout=0.5):
                self._reap(sentinels[ready])  # type: ignore[index]
        return 1 if self._failed else 0

    def _reap(self, index: int) -> None:
        process = self._workers.pop(index)
        process.join()
        code = process.exitcode
        _mark_dead(process.pid)
        if self._stopping:
            log.info("worker stopped", extra={"worker": index, "exit_code": code})
            self._failed |= code != 0
            return
        log.error(
            "worker exited unexpectedly",
            extra={"worker": index, "pid": process.pid, "exit_code": code},
        )
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > RESTART_WINDOW_S:
            self._crashes.popleft()
        if len(self._crashes) > RESTART_LIMIT:
            log.error(
                "workers keep crashing; stopping",
                extra={"crashes": len(self._crashes), "window_seconds": RESTART_WINDOW_S},
            )
            self._failed = True
            self._on_signal(signal.SIGTERM, None)
            return
        if self.restarts is not None:
            self.restarts.inc()
        self._spawn(index)

    def _kill_remaining(self) -> None:
        for index, process in self._workers.items():
            if process.exitcode is None and process.pid is not None:
                log.error("worker did not stop in time; killing it", extra={"worker": index})
                os.kill(process.pid, signal.SIGKILL)
        self._failed = True


def _mark_dead(pid: int | None) -> None:
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # noqa: TID251 - set by supervise
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _worker_main(settings: Settings, index: int) -> None:
    """The body of a forked worker: an ordinary single server, sharing the port."""
    from oriserver.cli.server_main import remember_stop_signals, run_server

    remember_stop_signals()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    from oriserver.bootstrap import Runtime

    metrics = "shared" if settings.metrics_port else "off"
    sys.exit(run_server(settings, Runtime(worker=index, metrics=metrics)))


def _prepare(settings: Settings, supervisor: Supervisor) -> MetricsServer | None:
    """Migrate once (not in every worker) and serve the workers' summed metrics."""
    if settings.events.enabled and settings.events.auto_migrate:
        from oriserver.store import migrate

        migrate.upgrade(settings.events.database)
    if not settings.metrics_port:
        return None
    from oriserver.telemetry.exposition import multiprocess_registry, serve_metrics
    from oriserver.telemetry.metrics import worker_restarts

    supervisor.restarts = worker_restarts(None)
    return serve_metrics(
        settings.metrics_listen_host, settings.metrics_port, multiprocess_registry()
    )


def supervise(settings: Settings) -> int:
    """Run settings.workers server processes until SIGTERM/SIGINT; the exit code says how it went."""
    try:
        reserved = reserve_port(settings.listen_host, settings.port)
    except OSError as error:
        log.error("cannot start: %s", error)
        return 1
    port = reserved.getsockname()[1]
    metrics_dir = tempfile.mkdtemp(prefix="oriserver-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # noqa: TID251 - must precede prometheus_client's import
    supervisor = Supervisor(settings, port)
    metrics_server = None
    try:
        from oriserver.errors import StoreError
        from oriserver.telemetry.exposition import MetricsBindError

        try:
            metrics_server = _prepare(settings, supervisor)
        except (StoreError, MetricsBindError) as error:
            log.error("cannot start: %s", error)
            return 1
        log.info("supervising workers", extra={"workers": settings.workers, "port": port})
        return supervisor.run()
    finally:
        if metrics_server is not None:
            metrics_server.stop()
        reserved.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
