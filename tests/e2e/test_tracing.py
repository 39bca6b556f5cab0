"""Optional OpenTelemetry tracing: off and unimported by default, a span per RPC when on."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc
from tests.support.servers import server_env, start_server_process

pytestmark = pytest.mark.slow


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP/gRPC receiver that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[object] = []
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 - the OTLP method name
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend(scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector():
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield receiver, port
    server.stop(0)


def test_without_otel_variables_tracing_is_not_even_imported(tmp_path: Path) -> None:
    script = f"""
import asyncio, sys
from oriserver.app import build_application
from oriserver.config import load_settings
settings = load_settings({{"ORI_PORT": "0", "ORI_METRICS_PORT": "0", "ORI_DATABASE_URL": "sqlite:///{tmp_path}/e.db"}})
async def main():
    app = build_application(settings)
    await app.start()
    await app.stop(0)
asyncio.run(main())
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=server_env({}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_each_rpc_gets_a_span_whose_trace_id_is_in_the_log_and_the_events(
    tmp_path: Path, collector
) -> None:
    receiver, port = collector
    server = start_server_process(tmp_path, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "oriserver-test", "OTEL_BSP_SCHEDULE_DELAY": "200",
    })  # fmt: skip
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.MathHelperStub(channel)
        stub.Summation(pb.SummationInput(first=1, last=2), timeout=5,
                       metadata=[("traceparent", f"00-{caller_trace}-00f067aa0ba902b7-01")])  # fmt: skip
        with pytest.raises(grpc.RpcError):
            stub.Factorial(pb.FactorialInput(base=-4), timeout=5)
    time.sleep(0.5)
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    spans = {s.name: s for s in receiver.spans if s.name.startswith("MathHelper/")}
    assert set(spans) == {"MathHelper/Summation", "MathHelper/Factorial"}
    summation_trace = spans["MathHelper/Summation"].trace_id.hex()
    factorial_trace = spans["MathHelper/Factorial"].trace_id.hex()
    assert summation_trace == caller_trace  # the caller's trace is continued
    assert spans["MathHelper/Summation"].kind == 2  # SPAN_KIND_SERVER
    logged = {line["method"]: line.get("trace_id") for line in server.records("rpc")}
    assert logged["/MathHelper/Summation"] == summation_trace
    assert logged["/MathHelper/Factorial"] == factorial_trace
    stored = dict(
        sqlite3.connect(tmp_path / "oriserver.db").execute(
            "SELECT DISTINCT method, trace_id FROM events"
        )
    )
    assert stored == {"Summation": summation_trace, "Factorial": factorial_trace}


def test_otel_variables_without_the_extra_installed_only_warn(tmp_path: Path) -> None:
    env = server_env({"ORI_PORT": "0", "OTEL_TRACES_EXPORTER": "console"})
    hide_otel = "import sys; sys.modules['opentelemetry'] = None; from oriserver.cli.server_main import main; main()"
    process = subprocess.Popen([sys.executable, "-c", hide_otel], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    time.sleep(3)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
    assert "the otel extra is not installed" in out
    assert '"message":"serving"' in out


def test_an_unknown_traces_exporter_is_a_configuration_error(tmp_path: Path) -> None:
    env = server_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    result = subprocess.run([sys.executable, "-m", "oriserver"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "OTEL_TRACES_EXPORTER: must be otlp, console or none" in result.stderr
