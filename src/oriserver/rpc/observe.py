"""One structured log line and the metrics per RPC, and a clean end for streams at shutdown.

A handler wrapper (see wrapping.py), so every service (MathHelper, the events
API, health and reflection) is covered the same way for one frame per call.
The lines themselves are written by access_log.py.

Server-streaming calls (health Watch, SubscribeEvents) would otherwise hold a
graceful stop for its whole grace period; ``close_streams`` ends them with
UNAVAILABLE so their clients reconnect to another instance at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from oriserver.rpc.access_log import AccessLog
from oriserver.rpc.engines import CallEnder
from oriserver.rpc.wrapping import Behavior, Deserializer, is_non_blocking
from oriserver.telemetry.metrics import Metrics
from oriserver.telemetry.trace_context import current_trace_id

log = logging.getLogger("oriserver.rpc")

SHUTDOWN_DETAILS = "server is shutting down; reconnect to another instance"
_OK = grpc.StatusCode.OK


class RpcObserver:
    """Told when each RPC starts and ends; counts calls in flight, feeds metrics, logs."""

    def __init__(self, access_log: AccessLog | None, metrics: Metrics | None = None) -> None:
        self._access_log = access_log
        self._metrics = metrics
        self._lock = threading.Lock()  # handlers run on many threads
        self.in_flight: dict[str, int] = {}

    def started(self, method: str) -> None:
        with self._lock:
            self.in_flight[method] = self.in_flight.get(method, 0) + 1

    def finished(self, method: str, peer: str, code: grpc.StatusCode, seconds: float) -> None:
        with self._lock:
            self.in_flight[method] -= 1
        if self._metrics is not None:
            self._metrics.rpc_finished(method, code, seconds)
        if self._access_log is not None:
            self._access_log.add(method, peer, code.name, seconds, current_trace_id.get())


def _code_of(context: grpc.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    code = context.code()  # type: ignore[attr-defined]  # grpc has it; the stubs lack it
    return code if isinstance(code, grpc.StatusCode) else default


def _failure_code(
    error: BaseException, context: grpc.ServicerContext, method: str
) -> grpc.StatusCode:
    """The status a call that raised ends with; unexpected errors are logged with a traceback."""
    code = _code_of(context, grpc.StatusCode.UNKNOWN)
    if code is _OK:  # raised without aborting: a bug in a handler
        code = grpc.StatusCode.UNKNOWN
    if code is grpc.StatusCode.UNKNOWN and isinstance(error, Exception):
        log.error("unhandled error in %s", method, exc_info=error)
    return code


class _Streams:
    """The open streaming calls, so that shutdown (or a stalled client) can end them."""

    def __init__(self, ender: CallEnder) -> None:
        self._ender = ender
        self._lock = threading.Lock()
        self._open: dict[int, Any] = {}
        self._forced: dict[int, grpc.StatusCode] = {}
        self.closing = False

    def add(self, context: Any) -> None:
        with self._lock:
            self._open[id(context)] = context

    def remove(self, context: Any) -> grpc.StatusCode | None:
        with self._lock:
            self._open.pop(id(context), None)
            return self._forced.pop(id(context), None)

    def end(self, context: Any, code: grpc.StatusCode, details: str) -> None:
        with self._lock:
            if id(context) not in self._open:
                return
            self._forced[id(context)] = code
        self._ender(context, code, details)

    def end_all(self, code: grpc.StatusCode, details: str) -> None:
        self.closing = True
        with self._lock:
            contexts = list(self._open.values())
        for context in contexts:
            self.end(context, code, details)


class ObservingWrapper:
    """Wraps each method handler so its outcome is timed and reported."""

    def __init__(self, observer: RpcObserver, ender: CallEnder) -> None:
        self._observer = observer
        self.streams = _Streams(ender)

    def wrap_deserializer(self, deserializer: Deserializer) -> Deserializer:
        return deserializer

    def close_streams(self) -> None:
        """End every open stream with UNAVAILABLE (at shutdown)."""
        self.streams.end_all(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_DETAILS)

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        started, finished = self._observer.started, self._observer.finished
        clock = time.perf_counter

        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            start = clock()
            started(method)
            code = _OK
            try:
                response = behavior(request, context)
            except BaseException as error:
                code = _failure_code(error, context, method)
                raise
            else:
                set_code = context.code()  # type: ignore[attr-defined]  # set without a raise
                if set_code is not None:
                    code = set_code
                return response
            finally:
                finished(method, context.peer(), code, clock() - start)

        return observed

    def wrap_streaming(self, behavior: Behavior, method: str) -> Behavior:
        blocking = self._wrap_blocking(behavior, method)
        if is_non_blocking(behavior):
            return self._wrap_non_blocking(behavior, blocking, method)
        return blocking

    def _wrap_blocking(self, behavior: Behavior, method: str) -> Behavior:
        streams = self.streams
        started, finished = self._observer.started, self._observer.finished

        def observed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            start = time.perf_counter()
            # Read the peer now: it may not be readable once the call has ended.
            peer = context.peer()
            started(method)
            streams.add(context)
            code = _OK
            try:
                if streams.closing:
                    context.abort(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_DETAILS)
                yield from behavior(request, context)
                code = _code_of(context, _OK)
            except GeneratorExit:
                code = grpc.StatusCode.CANCELLED  # the engine stopped reading: the call ended
                raise
            except BaseException as error:
                code = _failure_code(error, context, method)
                raise
            finally:
                forced = streams.remove(context)
                if forced is not None:
                    code = forced
                elif code is _OK and not context.is_active():
                    code = grpc.StatusCode.CANCELLED
                finished(method, peer, code, time.perf_counter() - start)

        return observed

    def _wrap_non_blocking(self, behavior: Behavior, blocking: Behavior, method: str) -> Behavior:
        """A stream that sends through a callback: it ends when the callback gets None,
        or when its call ends (the context's callback)."""
        streams = self.streams
        started, finished = self._observer.started, self._observer.finished

        def observed(
            request: Any,
            context: grpc.ServicerContext,
            send_response_callback: Callable[[Any], None] | None = None,
        ) -> Any:
            if send_response_callback is None:  # an engine without non-blocking streams
                return blocking(request, context)
            start = time.perf_counter()
            peer = context.peer()
            started(method)
            streams.add(context)
            once = threading.Lock()  # ended by the last send or by the call's end: once

            def end() -> None:
                if not once.acquire(blocking=False):
                    return
                forced = streams.remove(context)
                code = forced or _code_of(context, _OK)
                if code is _OK and not context.is_active():
                    code = grpc.StatusCode.CANCELLED
                finished(method, peer, code, time.perf_counter() - start)

            def send(response: Any) -> None:
                send_response_callback(response)
                if response is None:
                    end()

            context.add_callback(end)
            return behavior(request, context, send_response_callback=send)

        return observed
