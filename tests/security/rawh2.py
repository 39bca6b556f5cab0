"""A deliberately minimal HTTP/2 client over a plain socket, for misbehaving on purpose.

grpc's own client obeys the server's SETTINGS and rate-limits its pings, so it cannot
show what the server does to a client that does not. This speaks just enough HTTP/2
(frames, literal HPACK headers without Huffman coding) to open gRPC calls, send
pings and read back the server's SETTINGS, RST_STREAM and GOAWAY frames.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
NO_ERROR, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x0, 0x7, 0xB


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    stream: int
    payload: bytes

    @property
    def settings(self) -> dict[int, int]:
        p = self.payload
        return {
            int.from_bytes(p[i : i + 2], "big"): int.from_bytes(p[i + 2 : i + 6], "big")
            for i in range(0, len(p), 6)
        }

    @property
    def error_code(self) -> int:
        """For RST_STREAM and GOAWAY."""
        offset = 4 if self.type == GOAWAY else 0
        return int.from_bytes(self.payload[offset : offset + 4], "big")

    @property
    def debug_data(self) -> bytes:
        """For GOAWAY: the reason grpc gives, such as b'too_many_pings'."""
        return self.payload[8:]


def encode_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _hpack_int(value: int) -> bytes:
    if value < 127:
        return bytes([value])
    out, value = [127], value - 127
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    return bytes([*out, value])


def _literal(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return b"\x00" + _hpack_int(len(raw_name)) + raw_name + _hpack_int(len(raw_value)) + raw_value


def grpc_request_headers(path: str) -> bytes:
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    return b"".join(_literal(n, v) for n, v in fields)


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(payload)) + payload


class RawConnection:
    """One HTTP/2 connection; every read has a deadline so a test cannot hang."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""
        self.seen: list[Frame] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def handshake(self) -> Frame:
        """Preface and empty SETTINGS out, the server's SETTINGS in and acknowledged."""
        self.send(PREFACE + encode_frame(SETTINGS, 0, 0))
        frame = self.wait_for(lambda f: f.type == SETTINGS and not f.flags & ACK)
        self.send(encode_frame(SETTINGS, ACK, 0))
        return frame

    def open_call(self, stream: int, path: str, request: bytes = b"") -> None:
        """A complete unary-request call: HEADERS then one message with END_STREAM."""
        self.send(
            encode_frame(HEADERS, END_HEADERS, stream, grpc_request_headers(path))
            + encode_frame(DATA, END_STREAM, stream, grpc_message(request))
        )

    def ping(self, opaque: int) -> None:
        self.send(encode_frame(PING, 0, 0, struct.pack(">Q", opaque)))

    def _exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_frame(self) -> Frame:
        header = self._exact(9)
        length = int.from_bytes(header[:3], "big")
        stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
        return Frame(header[3], header[4], stream, self._exact(length))

    def wait_for(
        self, wanted: Callable[[Frame], bool], timeout: float = 5.0, *, seen_too: bool = False
    ) -> Frame:
        """Read frames until one matches; every frame read is kept in ``seen``. With
        ``seen_too``, a matching frame read earlier (while waiting for another) counts."""
        if seen_too:
            for frame in self.seen:
                if wanted(frame):
                    return frame
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            frame = self.read_frame()
            self.seen.append(frame)
            if wanted(frame):
                return frame
        raise TimeoutError("no matching frame arrived")

    def frames_until_closed(self, timeout: float) -> tuple[list[Frame], float]:
        """Every frame until the server closes the connection, and when it did."""
        start = time.monotonic()
        frames: list[Frame] = []
        try:
            while True:
                frames.append(self.wait_for(lambda _f: True, timeout - (time.monotonic() - start)))
        except (EOFError, ConnectionResetError):  # a close, or a reset: closed either way
            return frames, time.monotonic() - start


def grpc_status(frame: Frame) -> int | None:
    """The grpc-status in a HEADERS frame, if the server wrote it as a plain literal.

    grpc writes the trailer ``grpc-status`` with a literal (not Huffman-coded) value;
    a full HPACK decoder is not worth it for reading one small number.
    """
    at = frame.payload.find(b"grpc-status")
    if frame.type != HEADERS or at < 0:
        return None
    size = frame.payload[at + 11]
    value = frame.payload[at + 12 : at + 12 + size]
    return int(value) if size < 0x80 and value.isdigit() else None
