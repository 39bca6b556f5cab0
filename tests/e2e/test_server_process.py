"""The oriserver process: start-up errors, logs, health, and graceful shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.servers import server_env, start_server
from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc
from tests.support.engines import both_engines

engine = both_engines  # every test here runs on grpcio and on pygrpc-native


pytestmark = pytest.mark.slow


def _run_server(
    env: dict[str, str], tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oriserver", *args],
        env=server_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORI_PORT", "abc"),
        ("ORI_PORT", "70000"),
        ("ORI_LOG_FORMAT", "yaml"),
        ("ORI_EVENTS_BATCH_SIZE", "-3"),
    ],
)
def test_a_bad_variable_stops_start_up_with_one_line_and_exit_2(
    tmp_path: Path, name: str, value: str
) -> None:
    result = _run_server({name: value}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_an_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = _run_server({}, tmp_path, "frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_a_port_in_use_is_a_clear_runtime_error(tmp_path: Path) -> None:
    first = start_server(tmp_path, {})
    try:
        result = _run_server({"ORI_PORT": str(first.port)}, tmp_path)
    finally:
        first.kill()
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_every_rpc_writes_one_json_log_line(tmp_path: Path) -> None:
    server = start_server(tmp_path, {})
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.MathHelperStub(channel)
        stub.Summation(pb.SummationInput(first=1, last=2), timeout=5)
        with pytest.raises(grpc.RpcError):
            stub.Factorial(pb.FactorialInput(base=99), timeout=5)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    records = [json.loads(line) for line in server.logs().splitlines()]
    rpcs = [r for r in records if r["message"] == "rpc" and r["method"].startswith("/MathHelper/")]
    assert [(r["method"], r["code"]) for r in rpcs] == [
        ("/MathHelper/Summation", "OK"),
        ("/MathHelper/Factorial", "OUT_OF_RANGE"),
    ]
    for record in rpcs:
        assert record["peer"].startswith("ipv4:127.0.0.1:")
        assert isinstance(record["duration_ms"], float)
        assert record["level"] == "INFO"


def test_text_log_format_is_human_readable(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"ORI_LOG_FORMAT": "text"})
    with grpc.insecure_channel(server.target) as channel:
        pb_grpc.MathHelperStub(channel).Factorial(pb.FactorialInput(base=3), timeout=5)
    server.signal(signal.SIGINT)
    assert server.wait() == 0
    line = next(x for x in server.logs().splitlines() if "/MathHelper/Factorial" in x)
    assert " INFO " in line
    assert "code=OK" in line
    assert not line.startswith("{")


def test_log_level_warning_silences_the_per_rpc_lines(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"ORI_LOG_LEVEL": "warning"})
    with grpc.insecure_channel(server.target) as channel:
        pb_grpc.MathHelperStub(channel).Factorial(pb.FactorialInput(base=3), timeout=5)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert "/MathHelper/Factorial" not in server.logs()


def test_sigterm_turns_health_not_serving_then_exits_zero(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"ORI_SHUTDOWN_GRACE_SECONDS": "2"})
    seen: list[int] = []
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="MathHelper"), timeout=20)
        reader = threading.Thread(target=lambda: _collect(watch, seen), daemon=True)
        reader.start()
        _wait_for(lambda: seen == [health_pb2.HealthCheckResponse.SERVING])
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        reader.join(10)
    assert seen[:2] == [
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ]


def test_sigterm_while_starting_up_is_a_graceful_stop(tmp_path: Path) -> None:
    """A pod can be stopped while its server is still starting (e.g. a restarted worker):
    the signal is kept until the server is up, then honoured like any other (exit 0)."""
    server = start_server(tmp_path, {}, wait=False)
    # "event store ready" is logged before the event host is started and the port served.
    _wait_for(lambda: "event store ready" in server.logs())
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 0, server.logs()
    messages = [record["message"] for record in server.records()]
    assert messages.index("serving") < messages.index("shutting down") < messages.index("stopped")


def test_calls_in_flight_at_sigterm_are_answered(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"ORI_SHUTDOWN_GRACE_SECONDS": "5"})
    outcomes: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.MathHelperStub(channel)
            while True:
                try:
                    stub.Summation(pb.SummationInput(first=1, last=1), timeout=5)
                    result = "OK"
                except grpc.RpcError as error:
                    result = error.code().name
                with lock:
                    outcomes.append(result)
                if result != "OK":
                    return

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    _wait_for(lambda: len(outcomes) > 200)
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    for thread in threads:
        thread.join(10)
    # Calls that arrive after shutdown begins are refused (UNAVAILABLE, or
    # CANCELLED when grpc resets a stream it had not handed to the server yet).
    # Every call the server started was finished and answered: the server's
    # own log has exactly as many OK lines as the clients saw, and none cut off.
    assert set(outcomes) <= {"OK", "UNAVAILABLE", "CANCELLED"}, set(outcomes)
    records = [json.loads(line) for line in server.logs().splitlines()]
    served = [r["code"] for r in records if r.get("method") == "/MathHelper/Summation"]
    assert served.count("OK") == outcomes.count("OK")
    assert set(served) == {"OK"}


def test_reflection_can_be_switched_off(tmp_path: Path) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    server = start_server(tmp_path, {"ORI_REFLECTION": "false"})
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.kill()


def _collect(stream: grpc.Call, into: list[int]) -> None:
    try:
        for reply in stream:  # type: ignore[attr-defined]
            into.append(reply.status)
    except grpc.RpcError:
        pass


def _wait_for(condition, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)
