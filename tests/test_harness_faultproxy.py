"""The fault proxy the reliability scenarios and the store bench rely on does what it says, on
real sockets: passes bytes, stalls without closing, cuts, heals, and retargets new connections."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from harness.faultproxy import FaultProxy, fault_proxy


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A TCP echo server on loopback that prefixes every reply with its own port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1024):
                conn.sendall(f"{port}:".encode() + data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield ("127.0.0.1", port)
    listener.close()


def ask(proxy: FaultProxy, payload: bytes, timeout: float = 2.0) -> bytes:
    """The reply, or b"" when the proxy closed (or reset) the connection."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout) as conn:
        conn.sendall(payload)
        try:
            return conn.recv(1024)
        except ConnectionResetError:
            return b""


def test_a_stall_holds_the_connection_open_and_forwards_nothing_until_healed(echo) -> None:
    with fault_proxy(echo) as proxy:
        conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.3)
        proxy.blackhole()
        conn.sendall(b"lost")
        with pytest.raises(TimeoutError):  # open, but silent
            conn.recv(1024)
        proxy.heal()
        conn.sendall(b"back")
        assert conn.recv(1024) == f"{echo[1]}:back".encode()
        conn.close()


def test_a_cut_closes_open_connections_and_refuses_new_ones(echo) -> None:
    with fault_proxy(echo) as proxy:
        conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        conn.sendall(b"hi")
        assert conn.recv(1024) == f"{echo[1]}:hi".encode()
        proxy.cut()
        assert conn.recv(1024) == b""  # closed by the proxy
        assert ask(proxy, b"again") == b""
        proxy.heal()
        assert ask(proxy, b"healed") == f"{echo[1]}:healed".encode()
        conn.close()


def test_retarget_sends_new_connections_elsewhere(echo) -> None:
    other = socket.create_server(("127.0.0.1", 0))
    nowhere = other.getsockname()
    other.close()  # a port nothing listens on
    with FaultProxy(nowhere) as proxy:
        assert ask(proxy, b"x") == b""  # upstream refused: the proxy closes
        proxy.retarget(echo)
        assert ask(proxy, b"y") == f"{echo[1]}:y".encode()


def test_for_url_forwards_to_the_database_in_the_url() -> None:
    assert FaultProxy.for_url("postgresql://u@db.local:6543/x")._target == ("db.local", 6543)
    unix = FaultProxy.for_url("postgresql://u@/x?host=/run/pg&port=5433")
    assert unix._target == "/run/pg/.s.PGSQL.5433"
