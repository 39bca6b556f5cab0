"""Each server limit is really applied: message size, streams, metadata, pings, idle, age."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from harness.servers import start_server
from oriserver.config.transport import LimitSettings
from tests.security.conftest import assert_healthy, wait_for_rpc_lines
from tests.security.rawh2 import (
    DATA,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEADERS,
    PING,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    RawConnection,
)
from tests.support.engines import both_engines, grpcio_only
from tests.support.servers import ServerThread

engine = both_engines  # every test here runs on grpcio and on pygrpc-native


StartServer = Callable[[Mapping[str, str]], ServerThread]
WATCH = "/grpc.health.v1.Health/Watch"


def _unknown_field(total: int) -> bytes:
    """A valid SummationInput of exactly ``total`` bytes: one unknown bytes field (15)."""
    body = total - 4  # tag (1 byte) + a 3-byte varint length, for totals up to 2 MiB
    return (
        b"\x7a"
        + bytes([(body & 0x7F) | 0x80, ((body >> 7) & 0x7F) | 0x80, body >> 14])
        + (b"x" * body)
    )


def test_the_defaults_are_the_documented_ones() -> None:
    options = dict(LimitSettings().grpc_options())
    assert options["grpc.max_receive_message_length"] == 64 * 1024
    assert options["grpc.max_concurrent_streams"] == 100
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 30_000
    assert options["grpc.server_handshake_timeout_ms"] == 10_000
    assert options["grpc.max_metadata_size"] == options["grpc.absolute_max_metadata_size"]


def test_a_request_over_the_receive_limit_gets_resource_exhausted(server: ServerThread) -> None:
    summation = grpc.insecure_channel(server.target).unary_unary("/MathHelper/Summation")
    assert summation(_unknown_field(64 * 1024), timeout=5) == b""  # at the limit: answered
    with pytest.raises(grpc.RpcError) as caught:
        summation(_unknown_field(64 * 1024 + 1), timeout=5)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max (65537 vs. 65536)" in caught.value.details()
    assert_healthy(server.target)


def test_the_receive_limit_follows_its_variable(server_with: StartServer) -> None:
    server = server_with({"ORI_MAX_RECEIVE_MESSAGE_BYTES": "2048"})
    summation = grpc.insecure_channel(server.target).unary_unary("/MathHelper/Summation")
    with pytest.raises(grpc.RpcError) as caught:
        summation(_unknown_field(2049), timeout=5)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_healthy(server.target)


def test_a_response_over_the_send_limit_gets_resource_exhausted(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"ORI_MAX_SEND_MESSAGE_BYTES": "1024"})
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            symbol = "ori.events.v1.EventsService"  # its file descriptor is about 2 KiB
            request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Sent message larger than max" in caught.value.details()
        time.sleep(0.3)
        assert server.process.poll() is None, f"the server died:\n{server.logs()[-2000:]}"
        assert_healthy(server.target)
    finally:
        server.kill()


def test_request_headers_over_the_metadata_limit_get_resource_exhausted(
    server: ServerThread, engine: str
) -> None:
    check = grpc.insecure_channel(server.target).unary_unary("/grpc.health.v1.Health/Check")
    # Comfortably under 16 KiB with the call's own headers: always accepted.
    for _ in range(20):
        assert check(b"", metadata=[("x-pad", "a" * 12_000)], timeout=5) == b"\x08\x01"
    # Over it: always refused (grpc's default would refuse only some between 8 and 16 KiB).
    for size in (17_000, 100_000):
        with pytest.raises(grpc.RpcError) as caught:
            check(b"", metadata=[("x-pad", "a" * size)], timeout=5)
        if engine == "native":
            # Refused at the HTTP/2 layer: 431 (read as UNKNOWN) or, far over, GOAWAY.
            assert caught.value.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE)
        else:
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_healthy(server.target)


def test_the_server_advertises_and_enforces_max_concurrent_streams(
    server_with: StartServer,
) -> None:
    server = server_with({"ORI_MAX_CONCURRENT_STREAMS": "2"})
    with RawConnection(server.port) as conn:
        settings = conn.handshake()
        assert settings.settings[SETTINGS_MAX_CONCURRENT_STREAMS] == 2
        # A client that ignores the setting opens three long-lived calls at once.
        for stream in (1, 3, 5):
            conn.open_call(stream, WATCH)
        reset = conn.wait_for(lambda f: f.type == RST_STREAM)
        assert (reset.stream, reset.error_code) == (5, REFUSED_STREAM)
        # The first two are served: each gets its SERVING message (which may have come
        # before the reset).
        for stream in (1, 3):
            conn.wait_for(lambda f, s=stream: f.type == DATA and f.stream == s, seen_too=True)
        assert {f.stream for f in conn.seen if f.type == HEADERS} == {1, 3}
    assert_healthy(server.target)


def test_a_grpc_client_queues_the_third_call_until_a_stream_is_free(
    server_with: StartServer,
) -> None:
    server = server_with({"ORI_MAX_CONCURRENT_STREAMS": "2"})
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watches = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=20) for _ in range(2)]
        for watch in watches:
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        third = stub.Check.future(health_pb2.HealthCheckRequest(), timeout=10)
        time.sleep(0.5)
        assert not third.done()  # waiting for a stream, not refused
        watches[0].cancel()
        assert third.result().status == health_pb2.HealthCheckResponse.SERVING
        watches[1].cancel()


@grpcio_only("the native engine does not police client pings")
def test_a_client_pinging_too_often_is_sent_away_with_too_many_pings(
    server: ServerThread,
) -> None:
    with RawConnection(server.port) as conn:
        conn.handshake()
        conn.open_call(1, WATCH)
        conn.wait_for(lambda f: f.type == DATA and f.stream == 1)
        # The first ping is free; grpc tolerates two more within the 30 s minimum.
        for opaque in range(3):
            conn.ping(opaque)
        time.sleep(0.3)
        conn.ping(3)
        frames, _ = conn.frames_until_closed(timeout=5)
    goaway = [f for f in conn.seen + frames if f.type == GOAWAY]
    assert goaway, "the server did not send GOAWAY"
    assert (goaway[0].error_code, goaway[0].debug_data) == (ENHANCE_YOUR_CALM, b"too_many_pings")
    assert_healthy(server.target)


def test_three_pings_are_tolerated_so_the_fourth_is_what_counts(server: ServerThread) -> None:
    with RawConnection(server.port) as conn:
        conn.handshake()
        conn.open_call(1, WATCH)
        conn.wait_for(lambda f: f.type == DATA and f.stream == 1)
        for opaque in range(3):
            conn.ping(opaque)
        acks = 0
        deadline = time.monotonic() + 1
        while acks < 3 and time.monotonic() < deadline:
            frame = conn.wait_for(lambda _f: True, timeout=1)
            assert frame.type != GOAWAY
            acks += frame.type == PING


@grpcio_only("the native engine refuses ORI_KEEPALIVE_MIN_PING_INTERVAL_SECONDS")
def test_a_grpc_client_with_aggressive_keepalive_is_disconnected(
    server_with: StartServer,
) -> None:
    server = server_with({"ORI_KEEPALIVE_MIN_PING_INTERVAL_SECONDS": "10"})
    aggressive = [
        ("grpc.keepalive_time_ms", 200),  # grpc clients still wait 1 s between pings
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    start = time.monotonic()
    with grpc.insecure_channel(server.target, options=aggressive) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=8
        )
        with pytest.raises(grpc.RpcError) as caught:
            for _ in watch:
                pass
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "Too many pings"
    assert time.monotonic() - start < 7
    assert_healthy(server.target)


@grpcio_only("the native engine refuses ORI_KEEPALIVE_MIN_PING_INTERVAL_SECONDS")
def test_pings_spaced_wider_than_the_minimum_are_accepted(server_with: StartServer) -> None:
    server = server_with({"ORI_KEEPALIVE_MIN_PING_INTERVAL_SECONDS": "1"})
    with RawConnection(server.port) as conn:
        conn.handshake()
        conn.open_call(1, WATCH)
        conn.wait_for(lambda f: f.type == DATA and f.stream == 1)
        # grpc's own default minimum (5 minutes) would send this client away at the fourth.
        for opaque in range(4):
            if opaque:
                time.sleep(1.1)
            conn.ping(opaque)
            conn.wait_for(lambda f, o=opaque: f.type == PING and f.payload == o.to_bytes(8, "big"))
        with pytest.raises(TimeoutError):
            conn.wait_for(lambda f: f.type == GOAWAY, timeout=0.3)


@grpcio_only("the native engine refuses ORI_MAX_CONNECTION_IDLE_SECONDS")
def test_an_idle_connection_is_closed_after_max_idle(server_with: StartServer) -> None:
    server = server_with({"ORI_MAX_CONNECTION_IDLE_SECONDS": "1"})
    with RawConnection(server.port) as conn:
        conn.handshake()
        frames, closed_after = conn.frames_until_closed(timeout=5)
    goaway = [f for f in frames if f.type == GOAWAY]
    assert goaway
    assert goaway[0].debug_data == b"connection idle"
    assert 0.5 < closed_after < 3


@grpcio_only("the native engine refuses ORI_HANDSHAKE_TIMEOUT_SECONDS")
def test_a_connection_that_never_completes_the_handshake_is_closed(
    server_with: StartServer,
) -> None:
    server = server_with({"ORI_HANDSHAKE_TIMEOUT_SECONDS": "1"})
    with RawConnection(server.port) as conn:
        conn.send(b"PRI * HTTP/2.0\r\n")  # half a preface, then nothing
        _, closed_after = conn.frames_until_closed(timeout=5)
    assert closed_after < 3
    assert_healthy(server.target)


@grpcio_only("the native engine refuses ORI_MAX_CONNECTION_AGE_SECONDS")
def test_max_connection_age_makes_clients_reconnect(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        {"ORI_MAX_CONNECTION_AGE_SECONDS": "1", "ORI_MAX_CONNECTION_AGE_GRACE_SECONDS": "1"},
    )
    try:
        before = len(wait_for_rpc_lines(server, bool))
        with grpc.insecure_channel(server.target) as channel:
            summation = channel.unary_unary("/MathHelper/Summation")
            calls = 0
            end = time.monotonic() + 3.2
            while time.monotonic() < end:
                assert summation(b"\x08\x02\x10\x28", timeout=5).startswith(b"\x08\x2a")
                calls += 1
                time.sleep(0.05)
        lines = wait_for_rpc_lines(server, lambda lines: len(lines) >= before + calls)
        peers = {
            line["peer"] for line in lines[before:] if line["method"] == "/MathHelper/Summation"
        }
        # One channel, one connection at a time: each new peer port is a reconnection.
        assert len(peers) >= 3, peers
    finally:
        server.kill()


@grpcio_only("the native engine refuses ORI_MAX_CONNECTION_AGE_SECONDS")
def test_a_stream_outliving_max_age_is_ended_after_the_grace_period(
    server_with: StartServer,
) -> None:
    server = server_with(
        {"ORI_MAX_CONNECTION_AGE_SECONDS": "1", "ORI_MAX_CONNECTION_AGE_GRACE_SECONDS": "1"}
    )
    start = time.monotonic()
    with grpc.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        with pytest.raises(grpc.RpcError) as caught:
            for _ in watch:
                pass
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert 1.5 < time.monotonic() - start < 8  # age (1 s, +-10% jitter) plus grace (1 s)
