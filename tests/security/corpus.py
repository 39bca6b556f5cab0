"""The committed seed corpus: hand-picked hostile request bodies, each named for what it tries.

Hypothesis explores around these at random; these run every time, byte for byte,
so a regression on a known-nasty input cannot hide behind a lucky random draw.
"""

from __future__ import annotations

from tests.support.protowire import UINT64_MASK, varint


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)


def int64(field: int, value: int) -> bytes:
    return tag(field, 0) + varint(value & UINT64_MASK)


SEEDS: dict[str, bytes] = {
    # Well-formed, including edge values the calculations must refuse.
    "empty message": b"",
    "first=2 last=40": int64(1, 2) + int64(2, 40),
    "int64 extremes": int64(1, INT64_MAX) + int64(2, INT64_MIN),
    "overflowing sum": int64(1, INT64_MAX) + int64(2, 1),
    "negative field 1": int64(1, -5),
    "field 1 = 20 (largest factorial)": int64(1, 20),
    "field 1 = 21 (factorial overflow)": int64(1, 21),
    "repeated field, last one wins": int64(1, 1) + int64(1, 7),
    "unknown fields only": int64(7, 1) + tag(9, 2) + varint(3) + b"abc" + tag(100, 5) + bytes(4),
    "highest field number": tag(2**29 - 1, 0) + varint(1),
    "wrong wire type for field 1 (bytes)": tag(1, 2) + varint(2) + b"hi",
    "wrong wire type for field 1 (fixed64)": tag(1, 1) + bytes(8),
    "wrong wire type for field 1 (fixed32)": tag(1, 5) + bytes(4),
    "balanced group": tag(5, 3) + int64(1, 1) + tag(5, 4),
    "health service name": tag(1, 2) + varint(10) + b"MathHelper",
    "unknown health service": tag(1, 2) + varint(7) + b"nothere",
    "overlong but valid varint (10 bytes)": tag(1, 0) + b"\x81" + b"\x80" * 8 + b"\x00",
    "large but under the limit": (tag(15, 2) + varint(60_000) + b"x" * 60_000),
    "many tiny unknown fields": (tag(3, 0) + b"\x01") * 20_000,
    # Malformed: protobuf must refuse these.
    "truncated varint": tag(1, 0) + b"\x80",
    "truncated tag": b"\x80",
    "varint of 11 bytes": tag(1, 0) + b"\xff" * 10 + b"\x01",
    "field number 0": b"\x00\x01",
    "wire type 6": tag(1, 6) + b"\x01",
    "wire type 7": tag(1, 7) + b"\x01",
    "length prefix past the end": tag(1, 2) + varint(100) + b"short",
    "huge length prefix": tag(1, 2) + b"\xff\xff\xff\xff\x0f" + b"x",
    "length prefix of 2**63": tag(15, 2) + varint(2**63) + b"x",
    "truncated fixed64": tag(1, 1) + bytes(3),
    "truncated fixed32": tag(1, 5) + bytes(2),
    "end group without start": tag(5, 4),
    "start group without end": tag(5, 3) + int64(1, 1),
    "mismatched group end": tag(5, 3) + tag(6, 4),
    "groups nested past the recursion limit": tag(5, 3) * 200 + tag(5, 4) * 200,
    "invalid UTF-8 in a string field": tag(1, 2) + varint(2) + b"\xff\xfe",
    "all 0xff": b"\xff" * 64,
    "an HTTP request instead of protobuf": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    # Past the 64 KiB receive limit: refused before parsing.
    "one byte over the receive limit": tag(15, 2) + varint(65_533) + b"x" * 65_533,
    "a megabyte": b"\x00" * (1024 * 1024),
}
