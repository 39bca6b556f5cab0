"""One structured log line and the metrics per RPC, and a clean end for streams at shutdown.

A handler wrapper (see wrapping.py), so every service (MathHelper, the events
API, health and reflection) is covered the same way for one coroutine frame per
call. The lines themselves are written by access_log.py.

Server-streaming calls (health Watch, SubscribeEvents) would otherwise hold a
graceful stop for its whole grace period; ``close_streams`` ends them with
UNAVAILABLE so their clients reconnect to another instance at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from oriserver.rpc.access_log import AccessLog
from oriserver.rpc.wrapping import Behavior, Deserializer, responses
from oriserver.telemetry.metrics import Metrics
from oriserver.telemetry.trace_context import current_trace_id

log = logging.getLogger("oriserver.rpc")


class RpcObserver:
    """Told when each RPC starts and ends; counts calls in flight, feeds metrics, logs."""

    def __init__(self, access_log: AccessLog | None, metrics: Metrics | None = None) -> None:
        self._access_log = access_log
        self._metrics = metrics
        self.in_flight: dict[str, int] = {}

    def started(self, method: str) -> None:
        self.in_flight[method] = self.in_flight.get(method, 0) + 1

    def finished(self, method: str, peer: str, code: grpc.StatusCode, seconds: float) -> None:
        self.in_flight[method] -= 1
        if self._metrics is not None:
            self._metrics.rpc_finished(method, code.name, seconds)
        if self._access_log is not None:
            self._access_log.add(method, peer, code.name, seconds, current_trace_id.get())


def _code_of(
    context: grpc.aio.ServicerContext[Any, Any], default: grpc.StatusCode
) -> grpc.StatusCode:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else default


def _failure_code(
    error: BaseException, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> grpc.StatusCode:
    """The status a call that raised ends with; unexpected errors are logged with a traceback."""
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    if isinstance(error, grpc.aio.AbortError):
        return _code_of(context, grpc.StatusCode.UNKNOWN)
    if isinstance(error, Exception):
        log.error("unhandled error in %s", method, exc_info=error)
    return grpc.StatusCode.UNKNOWN


class ObservingWrapper:
    """Wraps each method handler so its outcome is timed and reported."""

    def __init__(self, observer: RpcObserver) -> None:
        self._observer = observer
        self._streams: set[asyncio.Task[Any]] = set()
        self._closing = False

    def close_streams(self) -> int:
        """End every open server stream with UNAVAILABLE; returns how many were open."""
        self._closing = True
        for task in list(self._streams):
            task.cancel()
        return len(self._streams)

    def wrap_deserializer(self, deserializer: Deserializer) -> Deserializer:
        return deserializer

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        observer = self._observer

        async def observed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            # Read the peer now: grpc.aio may free an abandoned stream's call before our
            # finally runs, and context.peer() on a freed call crashes the process.
            peer = context.peer()
            observer.started(method)
            try:
                return await behavior(request, context)
            except BaseException as error:
                code = _failure_code(error, context, method)
                raise
            finally:
                if code is grpc.StatusCode.OK:
                    code = _code_of(context, code)
                observer.finished(method, peer, code, time.perf_counter() - start)

        return observed

    def wrap_streaming(self, behavior: Behavior, method: str) -> Behavior:
        observer = self._observer
        streams = self._streams

        async def observed(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            # Read the peer now: grpc.aio may free an abandoned stream's call before our
            # finally runs, and context.peer() on a freed call crashes the process.
            peer = context.peer()
            observer.started(method)
            task = asyncio.current_task()
            if task is not None:
                streams.add(task)
            try:
                if self._closing:
                    raise asyncio.CancelledError
                async for response in responses(behavior(request, context)):
                    yield response
            except asyncio.CancelledError:
                if not self._closing:
                    code = grpc.StatusCode.CANCELLED
                    raise
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, "server is shutting down; reconnect to another instance")
            except BaseException as error:
                code = _failure_code(error, context, method)
                raise
            finally:
                if task is not None:
                    streams.discard(task)
                if code is grpc.StatusCode.OK:
                    code = _code_of(context, code)
                observer.finished(method, peer, code, time.perf_counter() - start)

        return observed
