"""The plainest grpc.aio server, as grpcio's examples write it: shows the asyncio model's cost."""

from __future__ import annotations

import asyncio
import math
import sys

import grpc

from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc


class MathHelper(pb_grpc.MathHelperServicer):
    async def Summation(  # noqa: N802 - the wire method name
        self, request: pb.SummationInput, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.SummationResult:
        return pb.SummationResult(
            result=request.first + request.last, first=request.first, last=request.last
        )

    async def Factorial(  # noqa: N802 - the wire method name
        self, request: pb.FactorialInput, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.FactorialResult:
        if request.base < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "negative base")
        if request.base > 20:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, "result too large")
        return pb.FactorialResult(result=math.factorial(request.base), base=request.base)


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_MathHelperServicer_to_server(MathHelper(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
