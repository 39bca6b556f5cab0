"""Fixtures for the security tests: certificates, configured servers, server logs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.servers import ServerProcess
from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc
from oriserver.config import Settings, load_settings
from tests.security.pki import Pki, make_pki
from tests.support.cli import ori
from tests.support.servers import ServerThread, running_server


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def security_settings(tmp_path: Path, extra: Mapping[str, str] | None = None) -> Settings:
    """The suite's usual test settings plus the transport variables under test."""
    return load_settings(
        {
            "ORI_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
            "ORI_INSTANCE_ID": "security-test",
            "ORI_PORT": "0",
            "ORI_LISTEN_HOST": "127.0.0.1",
            "ORI_METRICS_PORT": "0",
            **(extra or {}),
        }
    )


@pytest.fixture
def server_with(
    tmp_path: Path, engine: str
) -> Iterator[Callable[[Mapping[str, str]], ServerThread]]:
    """Start real servers on the test's engine with extra ORI_* variables; all are stopped
    after the test."""
    stack: list[Any] = []

    def start(extra: Mapping[str, str]) -> ServerThread:
        folder = tmp_path / f"server-{len(stack)}"
        folder.mkdir()
        context = running_server(security_settings(folder, {"ORI_SERVER_ENGINE": engine, **extra}))
        server = context.__enter__()
        stack.append(context)
        return server

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def health_status(channel: grpc.Channel, timeout: float = 5.0) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout).status


def assert_healthy(target: str) -> None:
    """SERVING on a fresh connection, and a calculation still gives the right answer."""
    with grpc.insecure_channel(target) as channel:
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.MathHelperStub(channel)
        assert stub.Summation(pb.SummationInput(first=2, last=40), timeout=5).result == 42
        assert stub.Factorial(pb.FactorialInput(base=5), timeout=5).result == 120


def rpc_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """The server's per-RPC log lines (JSON on stdout), oldest first."""
    return server.records("rpc")


def settled_rpc_count(server: ServerProcess) -> int:
    """How many per-RPC lines the log holds once earlier calls' lines are written.

    The server writes these lines in batches every 100 ms, so a line can appear a
    moment after its call returned."""
    count = len(rpc_lines(server))
    while True:
        time.sleep(0.3)
        now = len(rpc_lines(server))
        if now == count:
            return count
        count = now


def wait_for_rpc_lines(
    server: ServerProcess, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Poll the log until ``done`` holds for the per-RPC lines (they are written after the reply)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = rpc_lines(server)
        if done(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


run_ori = ori  # the shared helper, under the name these tests use
