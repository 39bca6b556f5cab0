"""The MathHelper servicer: proto in, service call, proto out; nothing else."""

from __future__ import annotations

import grpc

from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc
from oriserver.domain.arithmetic import CalculationError
from oriserver.errors import RecordingUnavailable
from oriserver.rpc.status import status_for
from oriserver.service.calculations import CalculationService
from oriserver.service.calls import Caller
from oriserver.telemetry.trace_context import current_trace_id

IDEMPOTENCY_KEY = "ori-idempotency-key"  # request metadata; see docs/event-store.md
MAX_IDEMPOTENCY_KEY = 128
_NO_DEADLINE = 1e9  # grpc reports a call without a deadline as a huge time_remaining()


def caller_of(context: grpc.ServicerContext) -> Caller:
    """Who asked, read from the call only when the calculation is recorded."""
    key = None
    for name, value in context.invocation_metadata() or ():
        if name == IDEMPOTENCY_KEY and isinstance(value, str):
            key = value
            break
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{IDEMPOTENCY_KEY} must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
        )
    remaining = context.time_remaining()
    patience = remaining if remaining is not None and remaining < _NO_DEADLINE else None
    return Caller(context.peer(), current_trace_id.get(), key, patience)


class MathHelperServicer(pb_grpc.MathHelperServicer):
    """Implements /MathHelper/Summation and /MathHelper/Factorial."""

    def __init__(self, calculations: CalculationService) -> None:
        self._calculations = calculations

    def Summation(  # noqa: N802 - the name is the wire method name
        self, request: pb.SummationInput, context: grpc.ServicerContext
    ) -> pb.SummationResult:
        first, last = request.first, request.last
        try:
            result = self._calculations.summation(first, last, lambda: caller_of(context))
        except (CalculationError, RecordingUnavailable) as error:
            context.abort(*status_for(error))
        return pb.SummationResult(result=result, first=first, last=last)

    def Factorial(  # noqa: N802 - the name is the wire method name
        self, request: pb.FactorialInput, context: grpc.ServicerContext
    ) -> pb.FactorialResult:
        base = request.base
        try:
            result = self._calculations.factorial(base, lambda: caller_of(context))
        except (CalculationError, RecordingUnavailable) as error:
            context.abort(*status_for(error))
        return pb.FactorialResult(result=result, base=base)
