"""The MathHelper servicer: proto in, service call, proto out; nothing else."""

from __future__ import annotations

import grpc

from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc
from oriserver.domain.arithmetic import CalculationError
from oriserver.errors import RecordingUnavailable
from oriserver.rpc.peer import client_ip
from oriserver.rpc.status import status_for
from oriserver.service.calculations import CalculationService, Caller
from oriserver.telemetry.trace_context import current_trace_id


def caller_of(context: grpc.aio.ServicerContext[object, object]) -> Caller:
    return Caller(client_ip=client_ip(context.peer()), trace_id=current_trace_id.get())


class MathHelperServicer(pb_grpc.MathHelperServicer):
    """Implements /MathHelper/Summation and /MathHelper/Factorial."""

    def __init__(self, calculations: CalculationService) -> None:
        self._calculations = calculations

    async def Summation(  # noqa: N802 - the name is the wire method name
        self, request: pb.SummationInput, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.SummationResult:
        try:
            result = await self._calculations.summation(
                request.first, request.last, caller_of(context)
            )
        except (CalculationError, RecordingUnavailable) as error:
            await context.abort(*status_for(error))
        return pb.SummationResult(result=result, first=request.first, last=request.last)

    async def Factorial(  # noqa: N802 - the name is the wire method name
        self, request: pb.FactorialInput, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.FactorialResult:
        try:
            result = await self._calculations.factorial(request.base, caller_of(context))
        except (CalculationError, RecordingUnavailable) as error:
            await context.abort(*status_for(error))
        return pb.FactorialResult(result=result, base=request.base)
