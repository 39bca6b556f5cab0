"""The one place events and call records become table rows, and rows become events again.

A row is a tuple in COLUMNS order, in the form that is cheapest to build and
that every backend adapts in one step: ids as 16 raw bytes, ``occurred_at`` as
integer microseconds since the Unix epoch, the client IP as text. The event
host builds rows straight from the serving process's call records
(``rows_from_records``), without an event object in between.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote
from uuid import UUID

from oriserver.domain.events import (
    EVENT_TYPES,
    CalculationFailed,
    CalculationRequested,
    CalculationSucceeded,
    Event,
    FailureCode,
    Inputs,
    Method,
    StoredEvent,
)
from oriserver.service.calls import METHOD_CODES, OUTCOME_CODES, CallRecord
from oriserver.service.ports import Row

# Column order of every insert, and of every select after (position, created_at).
COLUMNS = (
    "event_id",
    "calculation_id",
    "event_type",
    "method",
    "input_first",
    "input_last",
    "input_base",
    "result",
    "status_code",
    "error_message",
    "client_ip",
    "instance_id",
    "trace_id",
    "occurred_at",
)
EVENT_TYPE, METHOD = 2, 3  # the columns a projection counts

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
REQUESTED, SUCCEEDED, FAILED = (
    cls.__name__ for cls in (CalculationRequested, CalculationSucceeded, CalculationFailed)
)
_METHOD_NAMES = tuple(method.value for method in METHOD_CODES)
_CODE_NAMES = tuple(code.value if code else None for code in OUTCOME_CODES)
# Idempotency keys name a request: its ids are derived from the key and the request itself.
IDEMPOTENCY_NAMESPACE = UUID("6f726973-6572-4f76-8572-6b6579730001")
_LOW_48 = (1 << 48) - 1


def to_row(event: Event) -> Row:
    """The row of one domain event."""
    result = event.result if isinstance(event, CalculationSucceeded) else None
    code, message = (
        (event.code.value, event.message) if isinstance(event, CalculationFailed) else (None, None)
    )
    return (
        event.event_id.bytes, event.calculation_id.bytes, type(event).__name__, event.method.value,
        event.inputs.first, event.inputs.last, event.inputs.base, result, code, message,
        event.client_ip, event.instance_id, event.trace_id,
        (event.occurred_at - _EPOCH) // _MICROSECOND,
    )  # fmt: skip


_PEERS: dict[str, str | None] = {}
_PEER_CACHE_LIMIT = 10_000  # peers are per connection; the cache is cleared past this


def client_ip(peer: str) -> str | None:
    """'ipv4:10.0.0.7:5123' -> '10.0.0.7', 'ipv6:[::1]:5123' -> '::1', other transports -> None."""
    try:
        return _PEERS[peer]
    except KeyError:
        pass
    if len(_PEERS) >= _PEER_CACHE_LIMIT:
        _PEERS.clear()
    transport, _, address = unquote(peer).partition(":")
    host = address.rpartition(":")[0].strip("[]") if transport in ("ipv4", "ipv6") else ""
    try:
        ip: str | None = str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        ip = None
    _PEERS[peer] = ip
    return ip


def record_ids(origin: int, seq: int, record: CallRecord) -> tuple[int, int, int]:
    """(calculation id, request event id, outcome event id) as 128-bit integers.

    Derived, not drawn: a batch sent again after an event host restart gets the same
    ids, so the store's idempotent append keeps it once. Without an idempotency key
    they come from the serving process's random ``origin`` (a version-4 UUID) and the
    record's sequence number, mixed into the low 48 bits only, so the version and
    variant bits stay valid; with one, from the key and the request, so that a
    client's retry of the same request is stored once whichever server takes it.
    """
    key = record[9]
    if key is not None:
        name = f"{record[0]}|{record[1]}|{record[2]}|{key}"
        base = uuid.uuid5(IDEMPOTENCY_NAMESPACE, name).int
        return base, base ^ 1, base ^ 2
    low = (seq * 4) & _LOW_48
    return origin ^ low, origin ^ (low | 1), origin ^ (low | 2)


def rows_from_records(
    records: Sequence[CallRecord], origin: int, first_seq: int, instance_id: str
) -> list[Row]:
    """Two rows per call record (its request and its outcome), in record order."""
    rows: list[Row] = []
    append = rows.append
    for offset, record in enumerate(records):
        (method, first, last, outcome, value, peer, requested_ns, finished_ns, trace, _) = record
        calc, requested_id, outcome_id = record_ids(origin, first_seq + offset, record)
        calc_bytes = calc.to_bytes(16, "big")
        name = _METHOD_NAMES[method]
        ip = client_ip(peer)
        base = first if last is None else None
        first_in = None if last is None else first
        append((
            requested_id.to_bytes(16, "big"), calc_bytes, REQUESTED, name, first_in, last, base,
            None, None, None, ip, instance_id, trace, requested_ns // 1000,
        ))  # fmt: skip
        if outcome == 0:
            append((
                outcome_id.to_bytes(16, "big"), calc_bytes, SUCCEEDED, name, first_in, last, base,
                value, None, None, ip, instance_id, trace, finished_ns // 1000,
            ))  # fmt: skip
        else:
            append((
                outcome_id.to_bytes(16, "big"), calc_bytes, FAILED, name, first_in, last, base,
                None, _CODE_NAMES[outcome], value, ip, instance_id, trace, finished_ns // 1000,
            ))  # fmt: skip
    return rows


def count_rows(rows: Iterable[Row]) -> dict[tuple[type[Event], Method], int]:
    """Events per (type, method): what a projection folds (domain.totals.fold_counts)."""
    return count_types((row[EVENT_TYPE], row[METHOD]) for row in rows)


def count_types(pairs: Iterable[Sequence[str]]) -> dict[tuple[type[Event], Method], int]:
    """count_rows() for (event_type, method) column pairs."""
    names: dict[tuple[str, str], int] = {}
    for event_type, method in pairs:
        key = (event_type, method)
        names[key] = names.get(key, 0) + 1
    return {(EVENT_TYPES[t], _METHODS[m]): n for (t, m), n in names.items()}


def _uuid(value: Any) -> UUID:
    if isinstance(value, UUID):
        return value
    return UUID(bytes=value) if isinstance(value, bytes) else UUID(str(value))


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, int):
        return _EPOCH + value * _MICROSECOND
    return datetime.fromisoformat(str(value))


_METHODS = {method.value: method for method in Method}
_CODES = {code.value: code for code in FailureCode}


def from_row(row: Sequence[Any]) -> StoredEvent:
    """Rebuild a StoredEvent from (position, created_at, *COLUMNS)."""
    (position, created_at, event_id, calculation_id, event_type, method, first, last, base,
     result, status_code, error_message, client_ip_value, instance_id, trace_id, occurred_at) = row  # fmt: skip
    # Spelled out (no ** of a shared dict): this runs for every event a reader reads.
    ids = (_uuid(event_id), _uuid(calculation_id))
    inputs = Inputs(first=first, last=last, base=base)
    ip = None if client_ip_value is None else str(client_ip_value)
    at = _time(occurred_at)
    cls = EVENT_TYPES[event_type]
    event: Event
    if cls is CalculationSucceeded:
        event = CalculationSucceeded(
            event_id=ids[0], calculation_id=ids[1], method=_METHODS[method], inputs=inputs,
            client_ip=ip, instance_id=instance_id, occurred_at=at, trace_id=trace_id, result=result,
        )  # fmt: skip
    elif cls is CalculationFailed:
        event = CalculationFailed(
            event_id=ids[0], calculation_id=ids[1], method=_METHODS[method], inputs=inputs,
            client_ip=ip, instance_id=instance_id, occurred_at=at, trace_id=trace_id,
            code=_CODES[status_code], message=error_message,
        )  # fmt: skip
    else:
        event = CalculationRequested(
            event_id=ids[0], calculation_id=ids[1], method=_METHODS[method], inputs=inputs,
            client_ip=ip, instance_id=instance_id, occurred_at=at, trace_id=trace_id,
        )  # fmt: skip
    return StoredEvent(int(position), _time(created_at), event)
