"""The calculation use case: compute, hand the call's record to the recorder, answer."""

from __future__ import annotations

import time
from collections.abc import Callable

from oriserver.domain import arithmetic
from oriserver.domain.arithmetic import CalculationError, InvalidArgument, ResultOutOfRange
from oriserver.domain.events import FailureCode
from oriserver.service.calls import (
    FACTORIAL,
    INVALID_ARGUMENT,
    OUT_OF_RANGE,
    SUCCEEDED,
    SUMMATION,
    Caller,
    CallRecord,
)
from oriserver.service.recording import Recorder

_now_ns = time.time_ns


def failure_code(error: CalculationError) -> FailureCode:
    """The recorded name of a calculation error."""
    if isinstance(error, ResultOutOfRange):
        return FailureCode.OUT_OF_RANGE
    if isinstance(error, InvalidArgument):
        return FailureCode.INVALID_ARGUMENT
    raise TypeError(f"unmapped calculation error {type(error).__name__}")


def _outcome_code(error: CalculationError) -> int:
    return OUT_OF_RANGE if failure_code(error) is FailureCode.OUT_OF_RANGE else INVALID_ARGUMENT


class CalculationService:
    """Runs a calculation and records it; raises the domain error for the caller.

    ``caller`` is asked only when something records, so an unrecorded call
    never pays for reading its peer or metadata. In sync durability mode
    ``record`` returns once the call is committed, and raises
    RecordingUnavailable (the caller then gets no result) when it cannot be.
    """

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._records = recorder.records

    def summation(self, first: int, last: int, caller: Callable[[], Caller]) -> int:
        if not self._records:
            return arithmetic.summation(first, last)
        return self._run(SUMMATION, first, last, caller, arithmetic.summation, first, last)

    def factorial(self, base: int, caller: Callable[[], Caller]) -> int:
        if not self._records:
            return arithmetic.factorial(base)
        return self._run(FACTORIAL, base, None, caller, arithmetic.factorial, base)

    def _run(
        self,
        method: int,
        first: int,
        last: int | None,
        caller: Callable[[], Caller],
        calculate: Callable[..., int],
        *args: int,
    ) -> int:
        requested = _now_ns()
        who = caller()
        try:
            result = calculate(*args)
        except CalculationError as error:
            # args[0] is the module's constant message: one object, pickled once per batch.
            record: CallRecord = (
                method, first, last, _outcome_code(error), error.args[0], who.peer,
                requested, _now_ns(), who.trace_id, who.idempotency_key,
            )  # fmt: skip
            self._recorder.record(record, who.patience_s)
            raise
        record = (
            method, first, last, SUCCEEDED, result, who.peer,
            requested, _now_ns(), who.trace_id, who.idempotency_key,
        )  # fmt: skip
        self._recorder.record(record, who.patience_s)
        return result
