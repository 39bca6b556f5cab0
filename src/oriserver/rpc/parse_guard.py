"""Answers requests whose bytes do not parse with INTERNAL, without a traceback.

grpc.aio answers a request whose bytes are not a valid message with UNKNOWN, puts
the Python exception type in the details and logs a traceback at ERROR: any client
could flood the logs that way. grpc-go (and so the Go server) answers INTERNAL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from oriserver.rpc.wrapping import responses

UNPARSEABLE_DETAILS = "grpc: error unmarshalling request"


class _Unparseable:
    """Stands in for a request whose bytes did not parse."""


_UNPARSEABLE = _Unparseable()


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - every parse failure gets the one status below
            return _UNPARSEABLE

    return parse


async def _refuse(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.INTERNAL, UNPARSEABLE_DETAILS)


class ParseGuard:
    """A handler wrapper: parse failures become a marker, then an INTERNAL status."""

    def wrap_deserializer(self, deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        return _tolerant(deserializer)

    def wrap_unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if request is _UNPARSEABLE:
                await _refuse(context)
            return await behavior(request, context)

        return guarded

    def wrap_streaming(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def checked(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async for request in requests:
                if request is _UNPARSEABLE:
                    await _refuse(context)
                yield request

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if hasattr(request, "__aiter__"):  # the client streams its requests
                request = checked(request, context)
            elif request is _UNPARSEABLE:
                await _refuse(context)
            async for response in responses(behavior(request, context)):
                yield response

        return guarded
