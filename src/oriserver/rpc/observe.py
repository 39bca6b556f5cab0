"""One structured log line per RPC, and a clean end for long streams at shutdown.

Implemented as a server interceptor so that every service (MathHelper, the
events API, health and reflection) is covered the same way. Wrapped handlers
are cached per method, so the per-call cost is one extra coroutine frame.

Server-streaming calls (health Watch, SubscribeEvents) would otherwise hold a
graceful stop for its whole grace period; ``close_streams`` ends them with
UNAVAILABLE so their clients reconnect to another instance at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import unquote

import grpc

from oriserver.telemetry.metrics import Metrics

log = logging.getLogger("oriserver.rpc")

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

if TYPE_CHECKING:
    # grpc-stubs makes the interceptor generic; at run time the class is not subscriptable.
    _InterceptorBase = grpc.aio.ServerInterceptor[Any, Any]
else:
    _InterceptorBase = grpc.aio.ServerInterceptor


class RpcObserver:
    """Told when each RPC starts and ends; counts calls in flight, feeds metrics, logs."""

    def __init__(self, log_rpcs: bool, metrics: Metrics | None = None) -> None:
        self._log_rpcs = log_rpcs and log.isEnabledFor(logging.INFO)
        self._metrics = metrics
        self.in_flight: dict[str, int] = {}

    def started(self, method: str) -> None:
        self.in_flight[method] = self.in_flight.get(method, 0) + 1

    def finished(self, method: str, peer: str, code: grpc.StatusCode, seconds: float) -> None:
        self.in_flight[method] -= 1
        if self._metrics is not None:
            self._metrics.rpc_finished(method, code.name, seconds)
        if self._log_rpcs:
            log.info(
                "rpc",
                extra={
                    "method": method,
                    "peer": unquote(peer),
                    "code": code.name,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )


def _code_of(
    context: grpc.aio.ServicerContext[Any, Any], default: grpc.StatusCode
) -> grpc.StatusCode:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else default


class ObservingInterceptor(_InterceptorBase):
    """Wraps each method handler so its outcome is timed and reported."""

    def __init__(self, observer: RpcObserver) -> None:
        self._observer = observer
        self._cache: dict[tuple[str, int], Handler] = {}
        self._streams: set[asyncio.Task[Any]] = set()
        self._closing = False

    def close_streams(self) -> int:
        """End every open server stream with UNAVAILABLE; returns how many were open."""
        self._closing = True
        for task in list(self._streams):
            task.cancel()
        return len(self._streams)

    # The stubs say continuation never returns None; grpc does, for unknown methods.
    async def intercept_service(  # type: ignore[override]
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        key = (handler_call_details.method, id(handler))
        wrapped = self._cache.get(key)
        if wrapped is None:
            wrapped = self._wrap(handler, handler_call_details.method)
            self._cache[key] = wrapped
        return wrapped

    def _wrap(self, handler: Handler, method: str) -> Handler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(handler.stream_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
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
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = _code_of(context, grpc.StatusCode.UNKNOWN)
                raise
            except Exception:
                code = grpc.StatusCode.UNKNOWN
                log.exception("unhandled error in %s", method)
                raise
            finally:
                if code is grpc.StatusCode.OK:
                    code = _code_of(context, code)
                observer.finished(method, peer, code, time.perf_counter() - start)

        return observed

    def _streaming(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
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
                result = behavior(request, context)
                if hasattr(result, "__aiter__"):
                    async for response in result:
                        yield response
                else:
                    await result
            except asyncio.CancelledError:
                if not self._closing:
                    code = grpc.StatusCode.CANCELLED
                    raise
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(code, "server is shutting down; reconnect to another instance")
            except grpc.aio.AbortError:
                code = _code_of(context, grpc.StatusCode.UNKNOWN)
                raise
            except Exception:
                code = grpc.StatusCode.UNKNOWN
                log.exception("unhandled error in %s", method)
                raise
            finally:
                if task is not None:
                    streams.discard(task)
                if code is grpc.StatusCode.OK:
                    code = _code_of(context, code)
                observer.finished(method, peer, code, time.perf_counter() - start)

        return observed
