"""The calculation use case: compute, record both events, answer."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from oriserver.domain import arithmetic
from oriserver.domain.arithmetic import CalculationError, InvalidArgument, ResultOutOfRange
from oriserver.domain.events import (
    CalculationFailed,
    CalculationRequested,
    CalculationSucceeded,
    Event,
    FailureCode,
    Inputs,
    Method,
)
from oriserver.service.recording import Recorder

_random_bits = random.getrandbits


def new_id() -> uuid.UUID:
    """A random (version 4) UUID.

    From the random module rather than os.urandom: ids need to be unique, not secret,
    and this is several times cheaper on the hot path. The random module reseeds itself
    in forked children, so worker processes never share a sequence.
    """
    return uuid.UUID(int=_random_bits(128), version=4)


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
        self._records = recorder.records
        self._instance_id = instance_id
        self._clock = clock

    async def summation(self, first: int, last: int, caller: Caller) -> int:
        if not self._records:  # nothing records: no events to build
            return arithmetic.summation(first, last)
        inputs = Inputs(first=first, last=last)
        return await self._run(
            Method.SUMMATION, inputs, caller, lambda: arithmetic.summation(first, last)
        )

    async def factorial(self, base: int, caller: Caller) -> int:
        if not self._records:
            return arithmetic.factorial(base)
        inputs = Inputs(base=base)
        return await self._run(Method.FACTORIAL, inputs, caller, lambda: arithmetic.factorial(base))

    async def _run(
        self, method: Method, inputs: Inputs, caller: Caller, calculate: Callable[[], int]
    ) -> int:
        calculation_id = new_id()
        ip, trace, instance = caller.client_ip, caller.trace_id, self._instance_id
        requested = CalculationRequested(
            event_id=new_id(), calculation_id=calculation_id, method=method, inputs=inputs,
            client_ip=ip, instance_id=instance, occurred_at=self._clock(), trace_id=trace,
        )  # fmt: skip
        outcome: Event
        try:
            result = calculate()
        except CalculationError as error:
            outcome = CalculationFailed(
                event_id=new_id(), calculation_id=calculation_id, method=method, inputs=inputs,
                client_ip=ip, instance_id=instance, occurred_at=self._clock(), trace_id=trace,
                code=failure_code(error), message=str(error),
            )  # fmt: skip
            await self._recorder.record(requested, outcome)
            raise
        outcome = CalculationSucceeded(
            event_id=new_id(), calculation_id=calculation_id, method=method, inputs=inputs,
            client_ip=ip, instance_id=instance, occurred_at=self._clock(), trace_id=trace,
            result=result,
        )  # fmt: skip
        await self._recorder.record(requested, outcome)
        return result
