"""The calculation use case: compute, record both events, answer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from oriserver.domain import arithmetic
from oriserver.domain.arithmetic import CalculationError, InvalidArgument, ResultOutOfRange
from oriserver.domain.events import (
    CalculationEvent,
    CalculationFailed,
    CalculationRequested,
    CalculationSucceeded,
    FailureCode,
    Inputs,
    Method,
)
from oriserver.service.recording import Recorder


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asked: the peer's IP and, when tracing is on, the trace id."""

    client_ip: str | None
    trace_id: str | None = None


def failure_code(error: CalculationError) -> FailureCode:
    """The recorded name of a calculation error."""
    if isinstance(error, ResultOutOfRange):
        return FailureCode.OUT_OF_RANGE
    if isinstance(error, InvalidArgument):
        return FailureCode.INVALID_ARGUMENT
    raise TypeError(f"unmapped calculation error {type(error).__name__}")


class CalculationService:
    """Runs a calculation and records it; raises the domain error for the caller."""

    def __init__(
        self,
        recorder: Recorder,
        instance_id: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._recorder = recorder
        self._instance_id = instance_id
        self._clock = clock

    async def summation(self, first: int, last: int, caller: Caller) -> int:
        inputs = Inputs(first=first, last=last)
        return await self._run(
            Method.SUMMATION, inputs, caller, lambda: arithmetic.summation(first, last)
        )

    async def factorial(self, base: int, caller: Caller) -> int:
        inputs = Inputs(base=base)
        return await self._run(Method.FACTORIAL, inputs, caller, lambda: arithmetic.factorial(base))

    def _follow_up(self, requested: CalculationRequested) -> dict[str, Any]:
        """What an outcome shares with its request, plus its own id and time."""
        shared = {f.name: getattr(requested, f.name) for f in fields(CalculationEvent)}
        shared.update(event_id=uuid.uuid4(), occurred_at=self._clock())
        return shared

    async def _run(
        self, method: Method, inputs: Inputs, caller: Caller, calculate: Callable[[], int]
    ) -> int:
        calculation_id = uuid.uuid4()
        requested = CalculationRequested(
            event_id=uuid.uuid4(),
            calculation_id=calculation_id,
            method=method,
            inputs=inputs,
            client_ip=caller.client_ip,
            instance_id=self._instance_id,
            occurred_at=self._clock(),
            trace_id=caller.trace_id,
        )
        try:
            result = calculate()
        except CalculationError as error:
            failed = CalculationFailed(
                **self._follow_up(requested), code=failure_code(error), message=str(error)
            )
            await self._recorder.record(requested, failed)
            raise
        succeeded = CalculationSucceeded(**self._follow_up(requested), result=result)
        await self._recorder.record(requested, succeeded)
        return result
