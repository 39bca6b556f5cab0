"""Builders for domain events in tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from oriserver.domain.events import (
    CalculationFailed,
    CalculationRequested,
    CalculationSucceeded,
    Event,
    FailureCode,
    Inputs,
    Method,
)


def calculation(
    method: Method = Method.SUMMATION,
    *,
    inputs: Inputs | None = None,
    result: int | None = 3,
    client_ip: str | None = "127.0.0.1",
    instance_id: str = "test",
    trace_id: str | None = None,
    failure: tuple[FailureCode, str] | None = None,
) -> tuple[CalculationRequested, Event]:
    """A request and its outcome (success unless ``failure`` is given)."""
    calculation_id = uuid.uuid4()
    if inputs is None:
        inputs = Inputs(first=1, last=2) if method is Method.SUMMATION else Inputs(base=3)
    common = {
        "calculation_id": calculation_id,
        "method": method,
        "inputs": inputs,
        "client_ip": client_ip,
        "instance_id": instance_id,
        "trace_id": trace_id,
    }
    requested = CalculationRequested(event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), **common)  # type: ignore[arg-type]
    outcome: Event
    if failure is not None:
        outcome = CalculationFailed(
            event_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            code=failure[0],
            message=failure[1],
            **common,  # type: ignore[arg-type]
        )
    else:
        assert result is not None
        outcome = CalculationSucceeded(
            event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), result=result, **common
        )  # type: ignore[arg-type]
    return requested, outcome


def many(count: int, method: Method = Method.SUMMATION) -> list[Event]:
    """count calculations (2 * count events), every third one failed."""
    events: list[Event] = []
    for i in range(count):
        failure = (FailureCode.OUT_OF_RANGE, "too big") if i % 3 == 2 else None
        events.extend(calculation(method, failure=failure))
    return events
