"""Prometheus metrics from a real server: N calls in, N counted out."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import grpc
import pytest

from harness.metrics import scrape, value, wait_for_value
from harness.servers import free_port, server_env, start_server
from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def make_calls(target: str, ok: int, failing: int, connections: int = 1) -> None:
    channels = [
        grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(connections)
    ]
    try:
        for i in range(ok):
            pb_grpc.MathHelperStub(channels[i % connections]).Summation(
                pb.SummationInput(first=i, last=1), timeout=5
            )
        for i in range(failing):
            with contextlib.suppress(grpc.RpcError):
                pb_grpc.MathHelperStub(channels[i % connections]).Factorial(
                    pb.FactorialInput(base=-1 - i), timeout=5
                )
    finally:
        for channel in channels:
            channel.close()


def test_counters_count_every_call_and_event(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = start_server(tmp_path, {"ORI_METRICS_PORT": str(metrics_port)})
    try:
        make_calls(server.target, ok=37, failing=5)
        rpc = {"service": "MathHelper"}
        assert wait_for_value(metrics_port, "ori_events_appended_total", 84) == 84
        samples = scrape(metrics_port)
        assert value(samples, "ori_rpc_handled_total", **rpc, method="Summation", code="OK") == 37
        assert (
            value(
                samples, "ori_rpc_handled_total", **rpc, method="Factorial", code="INVALID_ARGUMENT"
            )
            == 5
        )
        assert value(samples, "ori_rpc_duration_seconds_count", **rpc, method="Summation") == 37
        assert (
            value(samples, "ori_rpc_duration_seconds_bucket", **rpc, method="Summation", le="+Inf")
            == 37
        )
        assert value(samples, "ori_events_dropped_total") == 0
        assert value(samples, "ori_events_store_up") == 1
        assert value(samples, "ori_events_buffer_capacity") == 100000
        assert value(samples, "ori_build_info", version=metadata.version("oriserver")) == 1
        assert value(samples, "ori_rpc_in_flight", **rpc, method="Summation") == 0
        checkpoint = wait_for_value(
            metrics_port, "ori_projection_checkpoint_position", 84, projection="running_totals"
        )
        assert checkpoint == 84
        lag = value(scrape(metrics_port), "ori_projection_lag_events", projection="running_totals")
        assert lag == 0
        assert value(samples, "process_cpu_seconds_total") is not None
    finally:
        server.signal(signal.SIGTERM)
        server.wait()


def test_metrics_port_zero_serves_no_metrics(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"ORI_METRICS_PORT": "0"})
    try:
        assert '"metrics_port":null' in server.logs()
    finally:
        server.kill()


def test_a_busy_metrics_port_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        env = server_env({"ORI_PORT": "0", "ORI_METRICS_PORT": str(taken.getsockname()[1])})
        result = subprocess.run([sys.executable, "-m", "oriserver"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 1
    assert (
        "cannot serve metrics on 127.0.0.1:" not in result.stdout or "cannot start" in result.stdout
    )
    assert "cannot serve metrics" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
