"""The plainest thread-pool grpcio server, as grpcio's examples write it: the baseline to compare."""

from __future__ import annotations

import math
import sys
from concurrent import futures

import grpc

from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc


class MathHelper(pb_grpc.MathHelperServicer):
    def Summation(  # noqa: N802 - the wire method name
        self, request: pb.SummationInput, context: grpc.ServicerContext
    ) -> pb.SummationResult:
        return pb.SummationResult(
            result=request.first + request.last, first=request.first, last=request.last
        )

    def Factorial(  # noqa: N802 - the wire method name
        self, request: pb.FactorialInput, context: grpc.ServicerContext
    ) -> pb.FactorialResult:
        if request.base < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "negative base")
        if request.base > 20:
            context.abort(grpc.StatusCode.OUT_OF_RANGE, "result too large")
        return pb.FactorialResult(result=math.factorial(request.base), base=request.base)


def serve(port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    pb_grpc.add_MathHelperServicer_to_server(MathHelper(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
