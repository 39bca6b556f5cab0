"""The two serving engines: grpcio's thread-pool server, and pygrpc-native's Rust front.

Both take the same synchronous servicers, wrappers and generated registration
code; only the object that owns the port differs (see docs/serving.md):

- ``grpcio`` (the default): grpc-core does HTTP/2 and calls Python handlers on a
  small thread pool. Streams get a pool of their own (grpc's per-handler
  ``experimental_thread_pool``), so that live subscriptions never take the
  threads that calculations need (health Watch is one of them).
  Health Check and the events API's unary reads get a small pool of their own.
- ``native``: pygrpc-native does HTTP/2 and gRPC framing in Rust, outside the
  GIL, and hands calls to the same handlers. It has no TLS and does not close
  connections by age or idleness; settings that ask for those are refused at
  start-up (config/serving.py).

``end_call`` ends a call from outside its handler with a chosen status: a
graceful shutdown ends open streams with UNAVAILABLE, and a subscriber that
stops reading is sent RESOURCE_EXHAUSTED while its handler is still blocked in
a send. Neither engine has a public API for that (grpc's ``ServicerContext.cancel``
always says CANCELLED), so this one function uses each engine's call object;
tests/e2e/test_events_api.py checks it on both engines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

CallEnder = Callable[[Any, grpc.StatusCode, str], None]
SIDE_THREADS = 2


def end_call(context: Any, code: grpc.StatusCode, details: str) -> None:
    """Send ``code`` and ``details`` to the client now and end the call."""
    rpc_event = getattr(context, "_rpc_event", None)
    if rpc_event is not None:  # grpcio (also the native engine's fallback server)
        rpc_event.call.cancel(code.value[0], details)
        return
    front, call = getattr(context, "_front", None), getattr(context, "_call", None)
    if front is not None and call is not None:  # pygrpc-native
        front.fail(call.call_id, code.value[0], details)
        call.terminate()
        return
    context.cancel()  # an engine we do not know: at least the call ends


@dataclass
class EngineServer:
    """A created (not started) server and what the composition root needs from its engine."""

    server: grpc.Server
    stream_pool: ThreadPoolExecutor | None  # for streaming handlers, where the engine honours it
    side_pool: ThreadPoolExecutor | None  # for unary calls other than calculations, likewise
    pools: tuple[ThreadPoolExecutor, ...]

    def shutdown_pools(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)


def started_pool(workers: int, prefix: str) -> ThreadPoolExecutor:
    """A thread pool whose ``workers`` threads are all running before the first call.

    ThreadPoolExecutor starts a thread on a submit that finds none idle. A hundred
    subscriptions opened at once then start a hundred threads while calculations wait
    behind them: with the native engine, whose one pool runs every handler, that burst set
    the calls' p99 at 45-100 ms (``scripts/reliability --scenario readers-native``). Each
    task below holds its thread until all are submitted, so every submit starts one.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix=prefix)
    all_started = threading.Event()
    for _ in range(workers):
        pool.submit(all_started.wait)
    all_started.set()
    return pool


def create_engine_server(
    engine: str, *, threads: int, stream_threads: int, options: Sequence[tuple[str, Any]]
) -> EngineServer:
    """A server of the named engine: ``threads`` for calls, ``stream_threads`` for streams."""
    if engine == "native":
        import pygrpc_native

        # One pool: pygrpc-native runs every handler on the executor it is given.
        pool = started_pool(threads + stream_threads, "rpc")
        native: grpc.Server = pygrpc_native.server(pool, options=list(options))
        return EngineServer(native, None, None, (pool,))
    calls = started_pool(threads, "rpc")
    streams = started_pool(stream_threads, "rpc-stream")
    # Health checks and event-API reads: a few threads that calculations never hold, so
    # a probe is answered while sync calls wait out a stalled database, and a flood of
    # reads queues here instead of taking the calculation threads.
    side = started_pool(SIDE_THREADS, "rpc-side")
    server = grpc.server(calls, options=list(options))
    return EngineServer(server, streams, side, (calls, streams, side))
