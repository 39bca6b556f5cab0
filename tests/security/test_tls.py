"""TLS and mTLS on the gRPC port, through the real server and the real ``ori`` command."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc
import pytest

from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc
from tests.security.conftest import run_ori as ori
from tests.security.pki import Leaf, Pki
from tests.security.rawh2 import PREFACE, SETTINGS, encode_frame
from tests.support.servers import ServerThread

StartServer = Callable[[Mapping[str, str]], ServerThread]


def tls_env(pki: Pki, *, mutual: bool = False) -> dict[str, str]:
    env = {
        "ORI_TLS_CERT_FILE": str(pki.server.cert_file),
        "ORI_TLS_KEY_FILE": str(pki.server.key_file),
    }
    if mutual:
        env["ORI_TLS_CLIENT_CA_FILE"] = str(pki.ca.cert_file)
    return env


def credentials(ca: Path | None, client: Leaf | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes() if ca else None,
        private_key=client.key_file.read_bytes() if client else None,
        certificate_chain=client.cert_file.read_bytes() if client else None,
    )


def summation(channel: grpc.Channel, timeout: float = 5.0) -> int:
    stub = pb_grpc.MathHelperStub(channel)
    return stub.Summation(pb.SummationInput(first=2, last=40), timeout=timeout).result


def refused(channel: grpc.Channel) -> grpc.RpcError:
    """The call must fail fast with UNAVAILABLE, well before its deadline."""
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        summation(channel, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - start < 4
    return caught.value


@pytest.fixture
def tls_server(server_with: StartServer, pki: Pki) -> ServerThread:
    return server_with(tls_env(pki))


@pytest.fixture
def mtls_server(server_with: StartServer, pki: Pki) -> ServerThread:
    return server_with(tls_env(pki, mutual=True))


def test_a_client_that_trusts_the_ca_gets_answers_over_tls(
    tls_server: ServerThread, pki: Pki
) -> None:
    with grpc.secure_channel(tls_server.target, credentials(pki.ca.cert_file)) as channel:
        assert summation(channel) == 42
    localhost = f"localhost:{tls_server.port}"
    with grpc.secure_channel(localhost, credentials(pki.ca.cert_file)) as channel:
        assert summation(channel) == 42


def test_a_plaintext_client_is_refused_by_a_tls_server_without_hanging(
    tls_server: ServerThread,
) -> None:
    with grpc.insecure_channel(tls_server.target) as channel:
        refused(channel)


def test_a_client_that_does_not_trust_the_server_ca_is_refused(
    tls_server: ServerThread, pki: Pki
) -> None:
    with grpc.secure_channel(tls_server.target, credentials(pki.other_ca.cert_file)) as channel:
        assert "CERTIFICATE_VERIFY_FAILED" in refused(channel).details()
    # The test CA is in no system trust store either.
    with grpc.secure_channel(tls_server.target, credentials(None)) as channel:
        refused(channel)


def test_the_server_name_is_checked_and_can_be_overridden(
    tls_server: ServerThread, pki: Pki
) -> None:
    def channel(name: str) -> grpc.Channel:
        options = [("grpc.ssl_target_name_override", name)]
        return grpc.secure_channel(tls_server.target, credentials(pki.ca.cert_file), options)

    with channel("wrong.example") as wrong:
        assert "Hostname Verification" in refused(wrong).details()
    with channel("localhost") as right:
        assert summation(right) == 42


def test_mtls_accepts_a_client_certificate_signed_by_the_client_ca(
    mtls_server: ServerThread, pki: Pki
) -> None:
    creds = credentials(pki.ca.cert_file, pki.client)
    with grpc.secure_channel(mtls_server.target, creds) as channel:
        assert summation(channel) == 42


def test_mtls_refuses_a_client_without_a_certificate(mtls_server: ServerThread, pki: Pki) -> None:
    with grpc.secure_channel(mtls_server.target, credentials(pki.ca.cert_file)) as channel:
        refused(channel)


def test_mtls_refuses_a_client_certificate_from_another_ca(
    mtls_server: ServerThread, pki: Pki
) -> None:
    creds = credentials(pki.ca.cert_file, pki.other_client)
    with grpc.secure_channel(mtls_server.target, creds) as channel:
        refused(channel)


def _first_http2_bytes(port: int, pki: Pki, client: Leaf | None) -> bytes:
    """Complete TLS as a bare socket, send the HTTP/2 preface, return what comes back."""
    context = ssl.create_default_context(cafile=str(pki.ca.cert_file))
    context.set_alpn_protocols(["h2"])
    if client is not None:
        context.load_cert_chain(client.cert_file, client.key_file)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(PREFACE + encode_frame(SETTINGS, 0, 0))
        try:
            return tls.recv(9)
        except (ssl.SSLError, ConnectionError):
            return b""


def test_mtls_refuses_at_the_handshake_before_any_http2_frame(
    mtls_server: ServerThread, pki: Pki
) -> None:
    # With a good certificate the server's first HTTP/2 frame (SETTINGS) arrives ...
    assert _first_http2_bytes(mtls_server.port, pki, pki.client)[3] == SETTINGS
    # ... without one, or with a stranger's, the connection ends before any frame.
    assert _first_http2_bytes(mtls_server.port, pki, None) == b""
    assert _first_http2_bytes(mtls_server.port, pki, pki.other_client) == b""


def test_ori_calls_a_tls_server_with_a_ca_file_flag_or_variable(
    tls_server: ServerThread, pki: Pki
) -> None:
    port = str(tls_server.port)
    by_flag = ori("--port", port, "--ca-file", str(pki.ca.cert_file), "summation", "2", "40")
    assert (by_flag.returncode, by_flag.stdout, by_flag.stderr) == (0, "42\n", "")
    by_env = ori("factorial", "5", env={"ORI_PORT": port, "ORI_TLS_CA_FILE": str(pki.ca.cert_file)})
    assert (by_env.returncode, by_env.stdout, by_env.stderr) == (0, "120\n", "")


def test_ori_without_tls_fails_against_a_tls_server_with_exit_1(tls_server: ServerThread) -> None:
    result = ori("--port", str(tls_server.port), "--timeout", "5", "health")
    assert result.returncode == 1
    assert result.stderr.startswith("ori: UNAVAILABLE: ")
    assert "Traceback" not in result.stderr


def test_ori_checks_the_server_name_and_server_name_overrides_it(
    tls_server: ServerThread, pki: Pki
) -> None:
    common = ("--host", "127.0.0.1", "--port", str(tls_server.port), "--ca-file")
    wrong = ori(*common, str(pki.ca.cert_file), "--server-name", "wrong.example", "health")
    assert wrong.returncode == 1
    assert "Hostname Verification" in wrong.stderr
    right = ori(*common, str(pki.ca.cert_file), "--server-name", "localhost", "health")
    assert (right.returncode, right.stdout) == (0, "SERVING\n")


def test_ori_presents_a_client_certificate_for_mtls(mtls_server: ServerThread, pki: Pki) -> None:
    port = str(mtls_server.port)
    ca = str(pki.ca.cert_file)
    without = ori("--port", port, "--ca-file", ca, "summation", "2", "40")
    assert without.returncode == 1
    assert without.stderr.startswith("ori: UNAVAILABLE: ")
    flags = ("--cert-file", str(pki.client.cert_file), "--key-file", str(pki.client.key_file))
    with_flags = ori("--port", port, "--ca-file", ca, *flags, "summation", "2", "40")
    assert (with_flags.returncode, with_flags.stdout) == (0, "42\n")
    with_env = ori(
        "summation",
        "2",
        "40",
        env={
            "ORI_PORT": port,
            "ORI_TLS": "true",
            "ORI_TLS_CA_FILE": ca,
            "ORI_TLS_CLIENT_CERT_FILE": str(pki.client.cert_file),
            "ORI_TLS_CLIENT_KEY_FILE": str(pki.client.key_file),
        },
    )
    assert (with_env.returncode, with_env.stdout) == (0, "42\n")
