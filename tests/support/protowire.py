"""Protobuf's base-128 varint, written out by hand so that tests can build and read bytes
without the generated code: the wire-compatibility tests act as an independent client,
and the hostile-input corpus needs encodings no protobuf library would produce."""

from __future__ import annotations

UINT64_MASK = (1 << 64) - 1


def varint(value: int) -> bytes:
    """The varint of a non-negative integer, of any width (wider than 64 bits on purpose)."""
    if value < 0:
        raise ValueError("varint() takes non-negative integers; mask int64 values first")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, i: int) -> tuple[int, int]:
    """The varint starting at data[i], and the index after it."""
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i
