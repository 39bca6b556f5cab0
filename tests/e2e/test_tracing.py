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

from harness.servers import ServerProcess, server_env, start_server
from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def _attributes(pairs) -> dict[str, object]:
    """OTLP KeyValue pairs as a plain dict (each value in its own type: str, int, ...)."""
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in pairs}


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP/gRPC receiver that keeps every span it is sent, with its resource and scope."""

    def __init__(self) -> None:
        self.spans: list[object] = []
        self.resources: list[dict[str, object]] = []
        self.schema_urls: set[str] = set()
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 - the OTLP method name
        with self.lock:
            for resource in request.resource_spans:
                self.resources.append(_attributes(resource.resource.attributes))
                for scope in resource.scope_spans:
                    self.schema_urls.add(scope.schema_url)
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
import sys
from oriserver.bootstrap import build_server
from oriserver.config import load_settings
settings = load_settings({{"ORI_PORT": "0", "ORI_METRICS_PORT": "0", "ORI_DATABASE_URL": "sqlite:///{tmp_path}/e.db"}})
app = build_server(settings)
app.start()
app.stop(0)
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
    server = start_server(tmp_path, {
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


def _traced_server(tmp_path: Path, port: int, extra: dict[str, str]) -> ServerProcess:
    return start_server(tmp_path, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_SERVICE_NAME": "", "OTEL_RESOURCE_ATTRIBUTES": "",
        **extra,
    })  # fmt: skip


def _stop(server: ServerProcess) -> None:
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0  # shutdown exports what is still batched


@pytest.mark.parametrize(
    ("environment", "service_name"),
    [
        ({"OTEL_SERVICE_NAME": "billing"}, "billing"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=ledger,team=maths"}, "ledger"),
        ({"OTEL_SERVICE_NAME": "billing", "OTEL_RESOURCE_ATTRIBUTES": "service.name=x"}, "billing"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=maths"}, "oriserver"),
        ({}, "oriserver"),
    ],
    ids=["service-name", "resource-attributes", "service-name-wins", "other-attributes", "unset"],
)
def test_the_service_is_named_by_the_opentelemetry_variables_and_oriserver_only_by_default(
    tmp_path: Path, collector, environment: dict[str, str], service_name: str
) -> None:
    receiver, port = collector
    server = _traced_server(tmp_path, port, environment)
    with grpc.insecure_channel(server.target) as channel:
        pb_grpc.MathHelperStub(channel).Summation(pb.SummationInput(first=1, last=2), timeout=5)
    _stop(server)
    assert receiver.resources
    for resource in receiver.resources:
        assert resource["service.name"] == service_name
        if "team=maths" in environment.get("OTEL_RESOURCE_ATTRIBUTES", ""):
            assert resource["team"] == "maths"


def test_spans_carry_the_grpc_semantic_convention_attributes(tmp_path: Path, collector) -> None:
    """OpenTelemetry semantic conventions v1.44, gRPC server spans."""
    receiver, port = collector
    server = _traced_server(tmp_path, port, {})
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.MathHelperStub(channel)
        stub.Summation(pb.SummationInput(first=1, last=2), timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Factorial(pb.FactorialInput(base=-4), timeout=5)
    _stop(server)
    spans = {s.name: s for s in receiver.spans if s.name.startswith("MathHelper/")}
    summation = _attributes(spans["MathHelper/Summation"].attributes)
    factorial = _attributes(spans["MathHelper/Factorial"].attributes)
    client_port = summation.pop("network.peer.port")
    assert isinstance(client_port, int)
    assert 0 < client_port != server.port
    assert summation == {
        "rpc.system.name": "grpc",
        "rpc.method": "MathHelper/Summation",
        "rpc.response.status_code": "OK",
        "network.peer.address": "127.0.0.1",
    }
    # A refused argument is the caller's fault: the status is recorded, the span is no error.
    assert factorial["rpc.method"] == "MathHelper/Factorial"
    assert factorial["rpc.response.status_code"] == refused.value.code().name
    assert "error.type" not in factorial
    assert spans["MathHelper/Factorial"].status.code == 0  # STATUS_CODE_UNSET
    assert receiver.schema_urls == {"https://opentelemetry.io/schemas/1.44.0"}


def test_a_server_side_failure_marks_the_span_as_an_error_with_its_type() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from oriserver.telemetry.tracing import RpcTracer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = RpcTracer(provider)
    tracer.begin("/ori.events.v1.EventsService/ListEvents", [], "ipv6:[::1]:40404").end(
        "UNAVAILABLE"
    )
    tracer.begin("/MathHelper/Summation", [], "unix:/run/ori.sock").end("CANCELLED")
    failed, cancelled = exporter.get_finished_spans()
    assert failed.name == "ori.events.v1.EventsService/ListEvents"
    assert failed.attributes["error.type"] == "UNAVAILABLE"
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes["network.peer.address"], failed.attributes["network.peer.port"]) == (
        "::1",
        40404,
    )
    assert "error.type" not in cancelled.attributes
    assert cancelled.status.status_code == StatusCode.UNSET
    assert cancelled.attributes["network.peer.address"] == "/run/ori.sock"
    assert "network.peer.port" not in cancelled.attributes


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
