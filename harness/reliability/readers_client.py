"""``python -m harness.reliability.readers_client TARGET STREAMS UNTIL SECONDS``: SubscribeEvents
streams from position 0, each read until it has passed position UNTIL or SECONDS are up; prints
one JSON line with what each stream read.

A process of its own so that reading the streams does not take the GIL from the load generator
whose latencies the readers scenario measures.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections import Counter

import grpc

from oriserver._generated.ori.events.v1 import events_pb2 as epb
from oriserver._generated.ori.events.v1 import events_pb2_grpc as epb_grpc

STREAMS_PER_CHANNEL = 10  # HTTP/2 streams share a connection, as a real client's would


def main(argv: list[str]) -> int:
    target, streams, until, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    signal.alarm(math.ceil(seconds + 30))  # bounded even if the parent vanishes
    channels = [grpc.insecure_channel(target) for _ in range(math.ceil(streams / 10))]
    read = [0] * streams
    caught_up = [0.0] * streams
    codes: Counter[str] = Counter()
    calls: list[grpc.RpcContext] = []  # to cancel
    lock = threading.Lock()
    started = time.monotonic()

    def reader(index: int) -> None:
        stub = epb_grpc.EventsServiceStub(channels[index // STREAMS_PER_CHANNEL])
        call = stub.SubscribeEvents(epb.SubscribeEventsRequest(from_position=0))
        with lock:
            calls.append(call)
        try:
            for reply in call:
                read[index] += 1
                if reply.event.position >= until:
                    caught_up[index] = time.monotonic() - started
                    call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave it untyped
                    break
        except grpc.RpcError as error:
            with lock:
                codes[error.code().name] += 1

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(streams)]
    for thread in threads:
        thread.start()
    print("started", flush=True)
    deadline = started + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        for call in calls:
            call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave it untyped
    for thread in threads:
        thread.join(5)
    codes.pop("CANCELLED", None)  # ours: caught up, or out of time
    print(json.dumps({"read": read, "caught_up_s": caught_up, "errors": dict(codes)}), flush=True)
    for chan in channels:
        chan.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
