"""Answers requests whose bytes do not parse with INVALID_ARGUMENT, without a traceback.

Left alone, grpc answers a request that does not parse with INTERNAL or UNKNOWN
and logs a traceback at ERROR: any client could flood the logs that way, and
INTERNAL tells monitoring that the server is broken when the caller is. Every
parse failure (bad wire bytes, groups nested deeper than protobuf's recursion
limit, a message of the wrong shape) gets the one answer below instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from oriserver.rpc.wrapping import is_non_blocking

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


def _refuse(context: grpc.ServicerContext) -> None:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNPARSEABLE_DETAILS)


class ParseGuard:
    """A handler wrapper: parse failures become a marker, then an INVALID_ARGUMENT status."""

    def wrap_deserializer(self, deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        return _tolerant(deserializer)

    def wrap_unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            # Only unary requests come here: no service of ours streams requests into
            # a single response (the reflection service streams both ways, below).
            if request is _UNPARSEABLE:
                _refuse(context)
            return behavior(request, context)

        return guarded

    def wrap_streaming(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        if is_non_blocking(behavior):

            def guarded_non_blocking(request: Any, context: grpc.ServicerContext, **kw: Any) -> Any:
                if request is _UNPARSEABLE:
                    _refuse(context)
                return behavior(request, context, **kw)

            return guarded_non_blocking

        def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if request is _UNPARSEABLE:
                _refuse(context)
            elif hasattr(request, "__next__"):
                request = _checked(request, context)
            yield from behavior(request, context)

        return guarded


def _checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    for request in requests:
        if request is _UNPARSEABLE:
            _refuse(context)
        yield request
