"""Binary COPY of event rows into PostgreSQL, straight from the row form of store/rows.py.

psycopg's binary dumpers want uuid.UUID, datetime and ipaddress objects, which
would cost more to build per row than the rest of the append. These three
dumpers take the row's own values instead (16 raw bytes, integer microseconds,
the IP's text) and write PostgreSQL's binary wire format for them directly.
They are registered on one connection's adapters, by type oid only, so they
apply to ``Copy.set_types`` in that COPY and nowhere else.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import psycopg
from psycopg import adapt, postgres
from psycopg.pq import Format

# Seconds from the Unix epoch to PostgreSQL's (2000-01-01), in microseconds.
_PG_EPOCH_OFFSET_US = 946_684_800_000_000
_INT8 = struct.Struct("!q")
# PostgreSQL's own address-family numbers in the inet wire format (utils/inet.h).
_PGSQL_AF_INET, _PGSQL_AF_INET6 = 2, 3

COPY_TYPES = (
    "uuid", "uuid", "text", "text", "int8", "int8", "int8", "int8", "text", "text",
    "inet", "text", "text", "timestamptz",
)  # fmt: skip


class _RawUuidDumper(adapt.Dumper):
    format = Format.BINARY
    oid = postgres.types["uuid"].oid

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


class _MicrosTimestampDumper(adapt.Dumper):
    format = Format.BINARY
    oid = postgres.types["timestamptz"].oid

    def dump(self, obj: Any) -> bytes:
        return _INT8.pack(obj - _PG_EPOCH_OFFSET_US)


_INET_CACHE: dict[str, bytes] = {}
_INET_CACHE_LIMIT = 10_000


def _inet(text: str) -> bytes:
    encoded = _INET_CACHE.get(text)
    if encoded is None:
        address = ipaddress.ip_address(text)
        family, bits = (_PGSQL_AF_INET, 32) if address.version == 4 else (_PGSQL_AF_INET6, 128)
        packed = address.packed
        encoded = bytes((family, bits, 0, len(packed))) + packed
        if len(_INET_CACHE) >= _INET_CACHE_LIMIT:
            _INET_CACHE.clear()
        _INET_CACHE[text] = encoded
    return encoded


class _TextInetDumper(adapt.Dumper):
    format = Format.BINARY
    oid = postgres.types["inet"].oid

    def dump(self, obj: Any) -> bytes:
        return _inet(obj)


def prepare(connection: psycopg.Connection[Any]) -> None:
    """Teach this connection's COPYs the row form (called once per new connection)."""
    for dumper in (_RawUuidDumper, _MicrosTimestampDumper, _TextInetDumper):
        connection.adapters.register_dumper(None, dumper)


def copy_rows(cursor: psycopg.Cursor[Any], statement: str, rows: Any) -> None:
    """COPY ``rows`` with ``statement`` (which must say FORMAT BINARY)."""
    with cursor.copy(statement) as copy:
        copy.set_types(COPY_TYPES)
        write_row = copy.write_row
        for row in rows:
            write_row(row)
