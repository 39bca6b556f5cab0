"""The compact record of one calculation call: what the serving path hands to recording.

A plain tuple, not events: building ids, events and rows costs several
microseconds per call, so the serving process only notes what happened and the
event host (eventhost/) turns each record into the two events later, off the
serving path. ``store/rows.py`` is the one place a record becomes rows.

Layout, by index (the constants below name them):
    method code, first (or base), last (None for Factorial), outcome code,
    result (or the error message), peer (grpc's peer string), requested at and
    finished at (Unix nanoseconds), trace id, idempotency key.
"""

from __future__ import annotations

from typing import NamedTuple, TypeAlias

from oriserver.domain.events import FailureCode, Method

CallRecord: TypeAlias = tuple[
    int, int, int | None, int, int | str, str, int, int, str | None, str | None
]

METHOD, FIRST, LAST, OUTCOME, VALUE, PEER, REQUESTED_NS, FINISHED_NS, TRACE_ID, KEY = range(10)

# Small integers pickle in one or two bytes; enums would carry their class name each time.
METHOD_CODES: tuple[Method, ...] = (Method.SUMMATION, Method.FACTORIAL)
SUMMATION, FACTORIAL = 0, 1
SUCCEEDED = 0
OUTCOME_CODES: tuple[FailureCode | None, ...] = (
    None,
    FailureCode.OUT_OF_RANGE,
    FailureCode.INVALID_ARGUMENT,
)
OUT_OF_RANGE, INVALID_ARGUMENT = 1, 2


class Caller(NamedTuple):
    """Who asked: grpc's peer string, the trace id when tracing is on, the
    idempotency key the client sent, if any, and how long it will wait for the
    answer (its deadline; None without one). A named tuple, built once per recorded
    call: a third of a frozen dataclass's cost, measured."""

    peer: str
    trace_id: str | None = None
    idempotency_key: str | None = None
    patience_s: float | None = None
