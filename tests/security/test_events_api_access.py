"""Who may read the log: the events API's access rules through real servers on both engines.

The calculation API stays open to everyone; ori.events.v1 answers loopback by
default, and only token or certificate holders once those are configured.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from harness.metrics import wait_for_value
from harness.servers import ServerProcess, free_port, server_env, start_server
from oriserver._generated import mathhelper_pb2 as mh
from oriserver._generated import mathhelper_pb2_grpc as mh_grpc
from oriserver._generated.ori.events.v1 import events_pb2 as pb
from oriserver._generated.ori.events.v1 import events_pb2_grpc as pb_grpc
from oriserver.service.access import token_id
from tests.security.conftest import run_ori
from tests.security.pki import Pki

ENGINES = pytest.mark.parametrize("engine", ["grpcio", "native"])
TOKEN = "reader-token-0123456789abcdef"  # noqa: S105 - a test token
NEW_TOKEN = "rotated-token-fedcba9876543210"  # noqa: S105 - a test token
WRONG = "wrong-token-00000000000000000"
Start = Callable[..., ServerProcess]


def non_loopback_address() -> str:
    """An address of this machine that is not loopback (the route out; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            pytest.skip("this machine has no non-loopback IPv4 address")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    return address


@pytest.fixture
def start(tmp_path: Path) -> Start:
    servers: list[ServerProcess] = []

    def run(engine: str, *, wait: bool = True, **env: str) -> ServerProcess:
        server = start_server(
            tmp_path,
            {
                "ORI_DATABASE_URL": f"sqlite:///{tmp_path / f'events-{len(servers)}.db'}",
                "ORI_SERVER_ENGINE": engine,
                **env,
            },
            wait=wait,
        )
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.kill()


def tokens_file(folder: Path, *tokens: str) -> Path:
    path = folder / "tokens"
    temporary = folder / "tokens.new"
    temporary.write_text("".join(f"{t}\n" for t in tokens))
    os.chmod(temporary, 0o600)
    temporary.replace(path)  # a whole new file at once, as a Secret volume update is
    return path


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def each_events_call(channel: grpc.Channel, metadata: list[tuple[str, str]]) -> list[object]:
    """Every events-API method, each returning what it read or raising."""
    stub = pb_grpc.EventsServiceStub(channel)
    return [
        stub.GetRunningTotals(pb.GetRunningTotalsRequest(), metadata=metadata, timeout=5),
        stub.ListEvents(pb.ListEventsRequest(from_position=1), metadata=metadata, timeout=5),
        next(stub.SubscribeEvents(pb.SubscribeEventsRequest(), metadata=metadata, timeout=5)),
    ]


def refusals(channel: grpc.Channel, metadata: list[tuple[str, str]]) -> list[grpc.StatusCode]:
    stub = pb_grpc.EventsServiceStub(channel)
    calls: list[Callable[[], object]] = [
        lambda: stub.GetRunningTotals(pb.GetRunningTotalsRequest(), metadata=metadata, timeout=5),
        lambda: stub.ListEvents(pb.ListEventsRequest(), metadata=metadata, timeout=5),
        lambda: list(stub.SubscribeEvents(pb.SubscribeEventsRequest(), metadata=metadata, timeout=5)),
    ]  # fmt: skip
    codes = []
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        codes.append(caught.value.code())
    return codes


def calculate(channel: grpc.Channel) -> None:
    stub = mh_grpc.MathHelperStub(channel)
    assert stub.Summation(mh.SummationInput(first=2, last=40), timeout=5).result == 42
    assert stub.Factorial(mh.FactorialInput(base=5), timeout=5).result == 120


def open_services(channel: grpc.Channel) -> None:
    """MathHelper, health and reflection answer whoever asks."""
    calculate(channel)
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for s in next(replies).list_services_response.service}
    assert "ori.events.v1.EventsService" in names


def audit_lines(server: ServerProcess) -> list[dict[str, object]]:
    return server.records("events API access")


@ENGINES
def test_by_default_no_caller_from_another_address_reads_a_single_event(
    start: Start, engine: str
) -> None:
    address = non_loopback_address()
    server = start(engine, ORI_LISTEN_HOST="[::]", ORI_EVENTS_DURABILITY="sync")
    with grpc.insecure_channel(f"{address}:{server.port}") as remote:
        open_services(remote)
        codes = refusals(remote, [])
        codes += refusals(remote, bearer(TOKEN))  # a token does not help: none is configured
    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * 6
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as local:
        _, page, first = each_events_call(local, [])
    assert len(page.events) == 4  # type: ignore[attr-defined]  # the log holds what was refused
    assert first.event.position == 1  # type: ignore[attr-defined]
    lines = audit_lines(server)
    refused = [line for line in lines if line["outcome"] == "denied"]
    assert len(refused) == 6
    assert all(address in str(line["peer"]) for line in refused)
    assert [line["caller"] for line in lines if line["outcome"] == "allowed"] == ["loopback"] * 3


@ENGINES
def test_a_refused_message_says_how_access_is_granted(start: Start, engine: str) -> None:
    server = start(engine, ORI_EVENTS_API_ALLOW_CIDRS="127.0.0.2/32")
    with grpc.insecure_channel(server.target) as channel:  # from 127.0.0.1
        calculate(channel)
        stub = pb_grpc.EventsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListEvents(pb.ListEventsRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "127.0.0.1" in caught.value.details()
    assert "ORI_EVENTS_API_ALLOW_CIDRS" in caught.value.details()
    assert "docs/security.md" in caught.value.details()


@ENGINES
def test_tokens_are_required_checked_rotated_counted_and_never_logged(
    start: Start, engine: str, tmp_path: Path
) -> None:
    path = tokens_file(tmp_path, TOKEN)
    metrics = free_port()
    server = start(
        engine,
        ORI_EVENTS_API_TOKENS_FILE=str(path),
        ORI_METRICS_PORT=str(metrics),
        ORI_METRICS_LISTEN_HOST="127.0.0.1",
    )
    with grpc.insecure_channel(server.target) as channel:
        calculate(channel)
        assert refusals(channel, []) == [grpc.StatusCode.UNAUTHENTICATED] * 3
        assert refusals(channel, bearer(WRONG)) == [grpc.StatusCode.PERMISSION_DENIED] * 3
        each_events_call(channel, bearer(TOKEN))
        tokens_file(tmp_path, NEW_TOKEN)  # rotated, no restart
        assert refusals(channel, bearer(TOKEN)) == [grpc.StatusCode.PERMISSION_DENIED] * 3
        each_events_call(channel, bearer(NEW_TOKEN))
    refused = {"name": "ori_events_api_refusals_total", "method": "ListEvents"}
    assert wait_for_value(metrics, **refused, code="UNAUTHENTICATED", expected=1) == 1
    assert wait_for_value(metrics, **refused, code="PERMISSION_DENIED", expected=2) == 2
    callers = [(line["caller"], line["outcome"]) for line in audit_lines(server)]
    assert callers == (
        [("anonymous", "unauthenticated")] * 3
        + [("unknown-token", "denied")] * 3
        + [(f"token:{token_id(TOKEN)}", "allowed")] * 3
        + [("unknown-token", "denied")] * 3
        + [(f"token:{token_id(NEW_TOKEN)}", "allowed")] * 3
    )
    server.signal()
    server.wait()
    logs = server.logs()
    assert "tokens file changed" in logs
    for secret in (TOKEN, NEW_TOKEN, WRONG):
        assert secret not in logs


@ENGINES
def test_ori_sends_its_token_file_and_is_refused_without_it(
    start: Start, engine: str, tmp_path: Path
) -> None:
    tokens = str(tokens_file(tmp_path, TOKEN))
    server = start(engine, ORI_EVENTS_API_TOKENS_FILE=tokens, ORI_EVENTS_DURABILITY="sync")
    mine = tmp_path / "my-token"
    mine.write_text(f"{TOKEN}\n")
    with grpc.insecure_channel(server.target) as channel:
        calculate(channel)
    refused = run_ori("totals", port=server.port)
    assert refused.returncode == 1
    assert refused.stderr.startswith("ori: UNAUTHENTICATED: ")
    assert len(refused.stderr.splitlines()) == 1
    by_flag = run_ori("--token-file", str(mine), "totals", port=server.port)
    assert by_flag.returncode == 0, by_flag.stderr
    assert by_flag.stdout.splitlines()[1].split() == ["Summation", "1", "1", "0"]
    by_env = run_ori("events", port=server.port, env={"ORI_TOKEN_FILE": str(mine)})
    assert by_env.returncode == 0, by_env.stderr
    assert len(by_env.stdout.splitlines()) == 4
    # The token goes to the events API only: MathHelper calls work with or without it.
    assert run_ori("--token-file", str(mine), "summation", "2", "40", port=server.port).stdout == (
        "42\n"
    )
    assert TOKEN not in server.logs()


def test_ori_will_not_send_a_token_in_plaintext_to_another_host(
    start: Start, tmp_path: Path
) -> None:
    address = non_loopback_address()
    server = start(
        "grpcio",
        ORI_LISTEN_HOST="[::]",
        ORI_EVENTS_API_TOKENS_FILE=str(tokens_file(tmp_path, TOKEN)),
    )
    mine = tmp_path / "my-token"
    mine.write_text(f"{TOKEN}\n")
    refused = run_ori("--host", address, "--token-file", str(mine), "totals", port=server.port)
    assert refused.returncode == 2
    assert refused.stderr.startswith("ori: configuration error: --token-file: refusing")
    assert len(refused.stderr.splitlines()) == 1
    # Commands that do not read the log neither need nor send the token: no refusal.
    calculation = ("--host", address, "--token-file", str(mine), "summation", "2", "40")
    assert run_ori(*calculation, port=server.port).stdout == "42\n"
    anonymous = run_ori("--host", address, "events", port=server.port)
    assert anonymous.returncode == 1
    assert "UNAUTHENTICATED" in anonymous.stderr
    insecure = ("--host", address, "--token-file", str(mine), "--allow-insecure-token", "totals")
    allowed = run_ori(*insecure, port=server.port)
    assert allowed.returncode == 0, allowed.stderr


def _tls_env(pki: Pki, **extra: str) -> dict[str, str]:
    return {
        "ORI_TLS_CERT_FILE": str(pki.server.cert_file),
        "ORI_TLS_KEY_FILE": str(pki.server.key_file),
        "ORI_TLS_CLIENT_CA_FILE": str(pki.ca.cert_file),
        **extra,
    }


def _mtls(server: ServerProcess, pki: Pki, cert: Path, key: Path) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_file.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )
    return grpc.secure_channel(f"localhost:{server.port}", credentials)


def test_mtls_client_names_grant_access_and_other_certificates_need_a_token(
    start: Start, pki: Pki, tmp_path: Path
) -> None:
    reader = pki.ca.issue("reader", server=False, dns=("reader.example",))
    spiffe = pki.ca.issue("workload", server=False, uris=("spiffe://example.org/ns/ops/sa/audit",))
    names = "reader.example,spiffe://example.org/ns/ops/sa/audit"
    env = _tls_env(pki, ORI_EVENTS_API_CLIENT_NAMES=names)
    env["ORI_EVENTS_API_TOKENS_FILE"] = str(tokens_file(tmp_path, TOKEN))
    server = _start_tls(start, env, pki)
    for leaf in (reader, spiffe):
        with _mtls(server, pki, leaf.cert_file, leaf.key_file) as channel:
            calculate(channel)
            each_events_call(channel, [])
    with _mtls(server, pki, pki.client.cert_file, pki.client.key_file) as channel:
        calculate(channel)  # any trusted certificate may calculate
        assert refusals(channel, []) == [grpc.StatusCode.UNAUTHENTICATED] * 3
        each_events_call(channel, bearer(TOKEN))  # ... and read the log with a token
    callers = {line["caller"] for line in audit_lines(server) if line["outcome"] == "allowed"}
    assert callers == {
        "cert:reader.example",
        "cert:spiffe://example.org/ns/ops/sa/audit",
        f"token:{token_id(TOKEN)}",
    }


def test_mtls_names_alone_refuse_an_unnamed_certificate(start: Start, pki: Pki) -> None:
    server = _start_tls(start, _tls_env(pki, ORI_EVENTS_API_CLIENT_NAMES="reader.example"), pki)
    with _mtls(server, pki, pki.client.cert_file, pki.client.key_file) as channel:
        calculate(channel)
        assert refusals(channel, bearer(TOKEN)) == [grpc.StatusCode.PERMISSION_DENIED] * 3


def _start_tls(start: Start, env: Mapping[str, str], pki: Pki) -> ServerProcess:
    """A TLS server; start_server_process's own wait speaks plaintext, so wait here."""
    server = start("grpcio", wait=False, **env)
    deadline = time.monotonic() + 20
    while True:
        try:
            with _mtls(server, pki, pki.client.cert_file, pki.client.key_file) as channel:
                calculate(channel)
        except grpc.RpcError:
            assert time.monotonic() < deadline, f"no TLS server; its output:\n{server.logs()}"
            time.sleep(0.1)
        else:
            return server


def _exit(tmp_path: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oriserver"],
        env=server_env({"ORI_PORT": str(free_port()), **env}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: {"ORI_EVENTS_API_TOKENS_FILE": str(d / "absent")}, "no such file"),
        (lambda d: {"ORI_EVENTS_API_TOKENS_FILE": str(_plain(d, "", 0o600))}, "holds no token"),
        (
            lambda d: {"ORI_EVENTS_API_TOKENS_FILE": str(_plain(d, TOKEN, 0o644))},
            "readable by every user",
        ),
        (lambda d: {"ORI_EVENTS_API_TOKENS_FILE": str(_plain(d, TOKEN, 0o000))}, "cannot read"),
        (
            lambda d: {"ORI_SERVER_ENGINE": "native", "ORI_EVENTS_API_CLIENT_NAMES": "a.example"},
            "native engine",
        ),
    ],
    ids=["missing", "empty", "world-readable", "unreadable", "native-with-client-names"],
)
def test_an_unusable_access_configuration_stops_the_server_with_one_line(
    tmp_path: Path, make: Callable[[Path], dict[str, str]], problem: str
) -> None:
    if os.geteuid() == 0 and problem == "cannot read":
        pytest.skip("root reads every file")
    result = _exit(tmp_path, make(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("oriserver: configuration error: ORI_EVENTS_API_")
    assert problem in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert TOKEN not in result.stderr


def _plain(folder: Path, content: str, mode: int) -> Path:
    path = folder / "tokens"
    path.write_text(f"{content}\n" if content else "")
    os.chmod(path, mode)
    return path
