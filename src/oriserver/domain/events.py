"""The facts the service records: one request and one outcome per calculation."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


class Method(enum.Enum):
    """The calculations MathHelper offers, named as on the wire."""

    SUMMATION = "Summation"
    FACTORIAL = "Factorial"


class FailureCode(enum.Enum):
    """Why a calculation failed; the names match the gRPC status codes sent back."""

    OUT_OF_RANGE = "OUT_OF_RANGE"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"


@dataclass(frozen=True, slots=True, kw_only=True)
class Inputs:
    """The request's arguments: first and last for Summation, base for Factorial."""

    first: int | None = None
    last: int | None = None
    base: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CalculationEvent:
    """What every event carries. Not recorded on its own: use a subclass."""

    event_id: UUID
    calculation_id: UUID
    method: Method
    inputs: Inputs
    client_ip: str | None
    instance_id: str
    occurred_at: datetime
    trace_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CalculationRequested(CalculationEvent):
    """A caller asked for a calculation."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CalculationSucceeded(CalculationEvent):
    """The calculation produced a result, which was sent back."""

    result: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CalculationFailed(CalculationEvent):
    """The calculation had no answer; the caller got this status and message."""

    code: FailureCode
    message: str


Event = CalculationRequested | CalculationSucceeded | CalculationFailed

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls for cls in (CalculationRequested, CalculationSucceeded, CalculationFailed)
}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back from the log, with its place in the global order."""

    position: int
    created_at: datetime
    event: Event

    @property
    def type_name(self) -> str:
        return type(self.event).__name__
