"""ORI_WORKERS: several processes share the port, count together, stop cleanly, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.event_table import stored_calls
from harness.load import Load
from harness.metrics import scrape, value, wait_for_value
from harness.servers import free_port, start_server
from oriserver.config.database import DatabaseUrl
from tests.e2e.test_metrics import make_calls

pytestmark = pytest.mark.slow


def workers_of(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children()


def wait_for(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def serving(target: str) -> bool:
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
    except grpc.RpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_parent_process_never_imports_grpc() -> None:
    code = (
        "import sys, oriserver.cli.server_main, oriserver.cli.workers; print('grpc' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_workers_share_the_load_and_lose_nothing_on_sigterm(
    tmp_path: Path, sqlite_database: DatabaseUrl
) -> None:
    metrics_port = free_port()
    server = start_server(tmp_path, {
        "ORI_WORKERS": "3", "ORI_METRICS_PORT": str(metrics_port),
        "ORI_DATABASE_URL": sqlite_database.url, "ORI_LOG_RPCS": "false",
    })  # fmt: skip
    assert len(workers_of(server.process.pid)) == 3
    make_calls(server.target, ok=60, failing=0, connections=12)  # SO_REUSEPORT spreads connections
    assert (
        wait_for_value(
            metrics_port,
            "ori_rpc_handled_total",
            60,
            service="MathHelper",
            method="Summation",
            code="OK",
        )
        == 60
    )
    load = Load(server.target, clients=6).start()
    load.wait_for(200)
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0, server.logs()
    load.stop()
    stored = stored_calls(sqlite_database)
    assert load.acknowledged() <= stored.answered
    assert len(stored.answered) == len(load.acknowledged()) + 60 - len(
        set(range(60)) & load.acknowledged()
    )
    assert stored.unpaired() == set()
    import sqlite3

    instances = {
        row[0]
        for row in sqlite3.connect(str(sqlite_database.sqlite_path)).execute(
            "SELECT DISTINCT instance_id FROM events"
        )
    }
    assert len(instances) >= 2, instances  # more than one worker recorded events


def test_a_crashed_worker_is_restarted_and_counted(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = start_server(
        tmp_path,
        {"ORI_WORKERS": "2", "ORI_METRICS_PORT": str(metrics_port), "ORI_INSTANCE_ID": "pod"},
    )
    try:
        victim = workers_of(server.process.pid)[0]
        os.kill(victim.pid, signal.SIGKILL)
        wait_for(
            lambda: (
                len(workers_of(server.process.pid)) == 2
                and victim.pid not in [p.pid for p in workers_of(server.process.pid)]
            )
        )
        wait_for(lambda: serving(server.target))
        assert wait_for_value(metrics_port, "ori_worker_restarts_total", 1) == 1
        # The replacement takes the crashed worker's place: it too comes up and serves.
        wait_for(lambda: len(server.records("serving", instance_id="pod/w0")) == 2)
        make_calls(server.target, ok=5, failing=0)
        assert server.records("worker exited unexpectedly", pid=victim.pid)
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait(60) == 0, server.logs()


def test_workers_that_keep_crashing_make_the_supervisor_give_up(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"ORI_WORKERS": "2"})
    deadline = time.monotonic() + 60
    while server.process.poll() is None and time.monotonic() < deadline:
        for worker in workers_of(server.process.pid):
            if worker.status() != psutil.STATUS_ZOMBIE:
                os.kill(worker.pid, signal.SIGKILL)
        time.sleep(0.3)
    assert server.wait(30) == 1
    assert "workers keep crashing; stopping" in server.logs()


def test_metrics_are_summed_across_workers(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = start_server(tmp_path, {"ORI_WORKERS": "2", "ORI_METRICS_PORT": str(metrics_port)})
    try:
        make_calls(server.target, ok=40, failing=4, connections=8)
        handled = wait_for_value(
            metrics_port,
            "ori_rpc_handled_total",
            40,
            service="MathHelper",
            method="Summation",
            code="OK",
        )
        assert handled == 40
        assert wait_for_value(metrics_port, "ori_events_appended_total", 88) == 88
        samples = scrape(metrics_port)
        assert value(samples, "ori_events_buffer_capacity") == 200000  # two writers, summed
        assert value(samples, "ori_events_store_up") == 1
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait(60) == 0
