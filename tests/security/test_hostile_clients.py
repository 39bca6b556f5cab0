"""Clients that misbehave: unknown methods, huge headers, expired deadlines, vanishing, bad HTTP/2.

After each, the server must still answer SERVING and compute correct results.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.servers import ServerProcess, start_server
from tests.security.conftest import assert_healthy, settled_rpc_count, wait_for_rpc_lines
from tests.security.rawh2 import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    RawConnection,
    encode_frame,
    grpc_message,
    grpc_request_headers,
    grpc_status,
)
from tests.support.engines import both_engines, native_xfail
from tests.support.servers import ServerThread

engine = both_engines  # every test here runs on grpcio and on pygrpc-native

WATCH = "/grpc.health.v1.Health/Watch"
SUMMATION = "/MathHelper/Summation"


@pytest.fixture(scope="module")
def logged_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("hostile-clients"), {})
    yield server
    server.kill()


@pytest.mark.parametrize(
    "path",
    [
        "/MathHelper/Subtraction",
        "/mathhelper/summation",
        "/MathHelper/Summation/extra",
        "/NoSuchService/Summation",
        "/grpc.health.v1.Health/Nope",
        "/",
        "no-leading-slash",
        "/" + "A" * 4000 + "/B",
    ],
)
def test_unknown_methods_and_services_get_unimplemented(
    server: ServerThread, path: str, engine: str
) -> None:
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(path)(b"\x08\x01", timeout=5)
        if engine == "native" and not path.startswith("/"):
            # Not a gRPC path at all: pygrpc-native resets the stream (the client reads
            # INTERNAL) where grpcio answers UNIMPLEMENTED.
            assert caught.value.code() == grpc.StatusCode.INTERNAL
        else:
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert_healthy(server.target)


def test_many_small_headers_over_the_limit_get_resource_exhausted(
    server: ServerThread, engine: str
) -> None:
    # pygrpc-native refuses oversized headers at the HTTP/2 layer: a 431 (which grpc
    # clients read as UNKNOWN) or, far over, GOAWAY (UNAVAILABLE).
    refused = (
        {grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}
        if engine == "native"
        else {grpc.StatusCode.RESOURCE_EXHAUSTED}
    )
    headers = [(f"x-h{i}", "v" * 20) for i in range(1000)]  # ~50 KiB in total
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(SUMMATION)(b"", metadata=headers, timeout=5)
        assert caught.value.code() in refused
    with grpc.insecure_channel(server.target) as channel:
        big_binary = [("x-blob-bin", bytes(200_000))]
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(SUMMATION)(b"", metadata=big_binary, timeout=5)
        assert caught.value.code() in refused
    assert_healthy(server.target)


def test_calls_whose_deadline_expires_fail_at_the_client_and_leave_the_server_well(
    logged_server: ServerProcess,
) -> None:
    before = settled_rpc_count(logged_server)
    with grpc.insecure_channel(logged_server.target) as channel:
        summation = channel.unary_unary(SUMMATION)
        codes: Counter[str] = Counter()
        for _ in range(200):
            try:
                # FactorialInput-shaped: field 1 = 2, so Summation answers 2 + 0.
                assert summation(b"\x08\x02", timeout=0) == b"\x08\x02\x10\x02"
                codes["OK"] += 1
            except grpc.RpcError as error:
                codes[error.code().name] += 1
        # grpc checks deadlines on a coarse timer, so some instant calls still get through;
        # others must be DEADLINE_EXCEEDED, and 200 calls always see some of those. Calls the
        # client abandons arrive faster than the server retires them, so beyond the HTTP/2
        # stream limit (ORI_MAX_CONCURRENT_STREAMS) the server refuses new streams
        # (REFUSED_STREAM, which clients see as UNAVAILABLE and may always retry).
        assert set(codes) <= {"OK", "DEADLINE_EXCEEDED", "UNAVAILABLE"}, codes
        assert codes["DEADLINE_EXCEEDED"] > 0, codes
        watch = channel.unary_stream(WATCH)(b"", timeout=0.3)
        with pytest.raises(grpc.RpcError) as caught:
            list(watch)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server let go of the stream when its deadline passed.
    lines = wait_for_rpc_lines(
        logged_server, lambda lines: any(line["method"] == WATCH for line in lines[before:])
    )
    watch_codes = [line["code"] for line in lines[before:] if line["method"] == WATCH]
    assert watch_codes in (["CANCELLED"], ["DEADLINE_EXCEEDED"])
    assert_healthy(logged_server.target)


VANISHING_CLIENT = """
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
channel = grpc.insecure_channel(sys.argv[1])
stub = health_pb2_grpc.HealthStub(channel)
watches = [stub.Watch(health_pb2.HealthCheckRequest()) for _ in range(5)]
for watch in watches:
    next(watch)
print("watching", flush=True)
sys.stdin.read()
"""


def _watch_endings(server: ServerProcess, before: int, count: int) -> list[str]:
    lines = wait_for_rpc_lines(
        server,
        lambda lines: sum(line["method"] == WATCH for line in lines[before:]) >= count,
    )
    return [line["code"] for line in lines[before:] if line["method"] == WATCH]


def test_a_client_killed_mid_stream_has_its_calls_cancelled_on_the_server(
    logged_server: ServerProcess,
) -> None:
    before = settled_rpc_count(logged_server)
    client = subprocess.Popen(
        [sys.executable, "-c", VANISHING_CLIENT, logged_server.target],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline() == "watching\n"
        client.send_signal(signal.SIGKILL)
        client.wait(10)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    assert _watch_endings(logged_server, before, 5) == ["CANCELLED"] * 5
    assert_healthy(logged_server.target)


def test_a_channel_closed_with_calls_in_flight_leaves_the_server_well(
    logged_server: ServerProcess,
) -> None:
    before = settled_rpc_count(logged_server)
    channel = grpc.insecure_channel(logged_server.target)
    stub = health_pb2_grpc.HealthStub(channel)
    watches = [stub.Watch(health_pb2.HealthCheckRequest()) for _ in range(5)]
    for watch in watches:
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    pending = [channel.unary_unary(SUMMATION).future(b"\x08\x01", timeout=5) for _ in range(20)]
    channel.close()
    endings: Counter[str] = Counter()
    for watch in watches:
        try:
            list(watch)
            endings["OK"] += 1
        except grpc.RpcError as error:
            endings[error.code().name] += 1
    for future in pending:
        endings["OK" if future.exception() is None else future.code().name] += 1
    assert set(endings) <= {"OK", "CANCELLED"}, endings
    assert endings["CANCELLED"] >= 5, endings
    assert _watch_endings(logged_server, before, 5) == ["CANCELLED"] * 5
    assert_healthy(logged_server.target)


def _response_status(conn: RawConnection, stream: int) -> int | None:
    frame = conn.wait_for(lambda f: f.type == HEADERS and grpc_status(f) is not None)
    assert frame.stream == stream
    return grpc_status(frame)


@native_xfail(
    "pygrpc-native never answers this call (the stream stays open until the client gives up)"
)
def test_a_message_prefix_claiming_4_gib_is_refused_at_once(server: ServerThread) -> None:
    with RawConnection(server.port) as conn:
        conn.handshake()
        conn.send(
            encode_frame(HEADERS, END_HEADERS, 1, grpc_request_headers(SUMMATION))
            + encode_frame(DATA, END_STREAM, 1, b"\x00\xff\xff\xff\xff" + b"x" * 10)
        )
        assert _response_status(conn, 1) == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert_healthy(server.target)


@native_xfail(
    "pygrpc-native never answers this call (the stream stays open until the client gives up)"
)
def test_a_compressed_message_without_an_encoding_gets_internal(server: ServerThread) -> None:
    with RawConnection(server.port) as conn:
        conn.handshake()
        conn.send(
            encode_frame(HEADERS, END_HEADERS, 1, grpc_request_headers(SUMMATION))
            + encode_frame(DATA, END_STREAM, 1, b"\x01" + grpc_message(b"\x08\x01")[1:])
        )
        assert _response_status(conn, 1) == grpc.StatusCode.INTERNAL.value[0]
    assert_healthy(server.target)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + encode_frame(HEADERS, END_HEADERS, 1, b"\xff" * 8),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + encode_frame(0x9, 0, 1, b"x"),  # stray CONTINUATION
    ],
    ids=["http/1.1", "tls hello", "broken hpack", "stray continuation"],
)
def test_a_connection_speaking_garbage_is_closed(server: ServerThread, garbage: bytes) -> None:
    with RawConnection(server.port) as conn:
        conn.send(garbage)
        _, closed_after = conn.frames_until_closed(timeout=5)
    assert closed_after < 5
    assert_healthy(server.target)


def test_calls_that_end_without_a_message_are_answered_at_once_and_hold_nothing(
    server: ServerThread, engine: str
) -> None:
    conn = RawConnection(server.port)
    conn.handshake()
    streams = list(range(1, 100, 2))
    for stream in streams:
        headers = grpc_request_headers(SUMMATION)
        conn.send(encode_frame(HEADERS, END_HEADERS | END_STREAM, stream, headers))
    ended: set[int] = set()
    deadline = time.monotonic() + 5
    while ended != set(streams) and time.monotonic() < deadline:
        frame = conn.wait_for(lambda f: f.type == HEADERS and bool(f.flags & END_STREAM))
        ended.add(frame.stream)
    # The first answer on the connection, whichever stream it ends: only it is fully encoded
    # (later ones refer to HPACK's table, which this raw client does not keep), and the
    # calls are answered on several threads, so stream 1's need not come first.
    first = next(f for f in conn.seen if f.type == HEADERS)
    conn.close()
    # grpc ends a unary call without its message at once; none waits.
    assert ended == set(streams)
    if engine == "grpcio":  # pygrpc-native's answer refers to HPACK's table even at first
        assert grpc_status(first) == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert_healthy(server.target)


def test_hundreds_of_connections_opened_and_dropped_leave_the_server_well(
    server: ServerThread,
) -> None:
    for _ in range(200):
        with RawConnection(server.port) as conn:
            conn.handshake()
    assert_healthy(server.target)


ABANDONING_CLIENT = """
import os, sys, grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
request = reflection_pb2.ServerReflectionRequest(list_services="")
for _ in range(10):
    channel = grpc.insecure_channel(sys.argv[1])
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo((request for _ in range(100_000)), timeout=20)
    for _ in range(100):
        next(replies)
    channel.close()  # in the middle of the stream, with the server still writing
sys.stdout.flush()
os._exit(0)  # grpc's request-iterator threads of the abandoned calls must not delay the exit
"""


def test_clients_abandoning_a_bidirectional_stream_do_not_crash_the_server(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path, {})
    try:
        client = subprocess.run(
            [sys.executable, "-c", ABANDONING_CLIENT, server.target],
            capture_output=True,
            timeout=60,
            check=False,
        )
        time.sleep(0.3)
        assert server.process.poll() is None, f"the server died:\n{server.logs()[-2000:]}"
        assert client.returncode == 0, client.stderr
        assert_healthy(server.target)
    finally:
        server.kill()


def test_watch_streams_churning_while_health_changes_never_wedge_the_server(
    server_with: Callable[[Mapping[str, str]], ServerThread],
) -> None:
    """Watchers that come and go while the status flips. grpc_health's non-blocking Watch
    sends under its lock, and grpcio's send waits for the thread that also runs a closing
    Watch's callback, which wants that lock: once, that deadlock hung every later status
    change and the shutdown for good (grpc/grpc#43403)."""
    server = server_with({})
    assert server.app is not None
    health = server.app.built.health
    done = threading.Event()

    def flip_health() -> None:
        serving = True
        while not done.is_set():
            serving = not serving
            health.set_all(serving)

    def churn_watches() -> None:
        with grpc.insecure_channel(server.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not done.is_set():
                watches = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=5) for _ in range(8)]
                for watch in watches:
                    next(watch, None)
                for watch in watches:
                    watch.cancel()

    workers = [threading.Thread(target=flip_health, daemon=True)]
    workers += [threading.Thread(target=churn_watches, daemon=True) for _ in range(3)]
    for worker in workers:
        worker.start()
    time.sleep(3)
    done.set()
    for worker in workers:
        worker.join(10)
    wedged = [worker.name for worker in workers if worker.is_alive()]
    if not wedged:
        health.set_all(True)
        assert_healthy(server.target)
    # Stopped here, on a thread of its own: a wedged server must fail this test, not hang
    # the fixture's teardown (which then has nothing left to stop).
    stopping = threading.Thread(target=server.stop, daemon=True)
    stopping.start()
    stopping.join(15)
    assert not wedged, f"still blocked after 10 s: {wedged}"
    assert not stopping.is_alive(), "the server's stop hung"
