"""The one place events become table rows and rows become events again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
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

Row = tuple[Any, ...]


def to_row(event: Event) -> Row:
    """The values for COLUMNS; UUIDs and datetimes stay typed for the driver to adapt."""
    result = event.result if isinstance(event, CalculationSucceeded) else None
    code, message = (
        (event.code.value, event.message) if isinstance(event, CalculationFailed) else (None, None)
    )
    return (
        event.event_id,
        event.calculation_id,
        type(event).__name__,
        event.method.value,
        event.inputs.first,
        event.inputs.last,
        event.inputs.base,
        result,
        code,
        message,
        event.client_ip,
        event.instance_id,
        event.trace_id,
        event.occurred_at,
    )


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


_METHODS = {method.value: method for method in Method}
_CODES = {code.value: code for code in FailureCode}


def from_row(row: Sequence[Any]) -> StoredEvent:
    """Rebuild a StoredEvent from (position, created_at, *COLUMNS)."""
    (position, created_at, event_id, calculation_id, event_type, method, first, last, base,
     result, status_code, error_message, client_ip, instance_id, trace_id, occurred_at) = row  # fmt: skip
    # Spelled out (no ** of a shared dict): this runs for every event the projection reads.
    ids = (_uuid(event_id), _uuid(calculation_id))
    inputs = Inputs(first=first, last=last, base=base)
    ip = None if client_ip is None else str(client_ip)
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


# -- the wire format between a server process and its event host process ------------------
# The row, with UUIDs as 16 raw bytes and the timestamp as integer microseconds since the
# epoch: about four times cheaper to pickle than events or typed rows, and exact.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

Wire = tuple[Any, ...]


def to_wire(event: Event) -> Wire:
    row = to_row(event)
    return (row[0].bytes, row[1].bytes, *row[2:13], (row[13] - _EPOCH) // _MICROSECOND)


def row_from_wire(wire: Sequence[Any]) -> Row:
    """The to_row() tuple of the event a to_wire tuple came from."""
    return (UUID(bytes=wire[0]), UUID(bytes=wire[1]), *wire[2:13], _EPOCH + wire[13] * _MICROSECOND)
