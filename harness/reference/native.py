"""The plainest pygrpc-native server: grpcio's example servicer behind pygrpc-native's Rust front.

The same servicer as harness/reference/threads.py; only the object that owns the port differs, so
the two together show what the engine alone costs.
"""

from __future__ import annotations

import sys
from concurrent import futures

import pygrpc_native

from harness.reference.threads import MathHelper
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc


def serve(port: int) -> None:
    server = pygrpc_native.server(futures.ThreadPoolExecutor(max_workers=10))
    pb_grpc.add_MathHelperServicer_to_server(MathHelper(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
