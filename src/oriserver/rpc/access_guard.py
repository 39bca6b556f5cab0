"""Enforces the events API's access rules on every ori.events.v1 call, on both engines.

A handler wrapper (wrapping.py) around the events service's methods only:
MathHelper, health and reflection are registered unwrapped by it. It reads what
the call shows through the ServicerContext methods both engines implement
(``peer()``, ``invocation_metadata()``, ``auth_context()``), asks
service/access.py, writes one audit line per call (the caller's identity, never
a token), counts refusals, and refuses with UNAUTHENTICATED or PERMISSION_DENIED
before the servicer runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, cast

import grpc

from oriserver.rpc.wrapping import Behavior, Deserializer
from oriserver.service.access import AccessPolicy, Credentials, Decision, Outcome

audit = logging.getLogger("oriserver.audit")

_CODES = {
    Outcome.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Outcome.DENIED: grpc.StatusCode.PERMISSION_DENIED,
}
_SAN_PROPERTIES = ("peer_dns", "peer_uri")  # DNS and URI subject alternative names


class RefusalCounter(Protocol):
    def access_refused(self, method: str, code: grpc.StatusCode) -> None: ...


def credentials_of(context: grpc.ServicerContext) -> Credentials:
    authorization = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            authorization = value
            break
    names: list[str] = []
    # A mapping of property name to a list of values (grpc-stubs say bytes).
    auth = cast("Mapping[str, Sequence[bytes]]", context.auth_context() or {})
    for prop in _SAN_PROPERTIES:
        names.extend(v.decode("utf-8", "replace") for v in auth.get(prop, ()))
    return Credentials(context.peer(), authorization, tuple(names))


class AccessGuard:
    """Wraps the methods of ``service`` (its full name); every other method passes through."""

    def __init__(
        self, service: str, policy: AccessPolicy, counter: RefusalCounter | None = None
    ) -> None:
        self._prefix = f"/{service}/"
        self._policy = policy
        self._counter = counter

    def wrap_deserializer(self, deserializer: Deserializer) -> Deserializer:
        return deserializer

    def _check(self, method: str, context: grpc.ServicerContext) -> None:
        """Returns if the call may go on; otherwise aborts it (grpc raises)."""
        decision = self._policy.decide(credentials_of(context))
        self._audit(method, context.peer(), decision)
        if decision.allowed:
            return
        code = _CODES[decision.outcome]
        if self._counter is not None:
            self._counter.access_refused(method, code)
        context.abort(code, decision.reason)

    def _audit(self, method: str, peer: str, decision: Decision) -> None:
        level = logging.INFO if decision.allowed else logging.WARNING
        audit.log(
            level,
            "events API access",
            extra={
                "method": method,
                "caller": decision.caller,
                "peer": peer,
                "outcome": decision.outcome.value,
            },
        )

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        if not method.startswith(self._prefix):
            return behavior
        check = self._check

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            check(method, context)
            return behavior(request, context)

        return guarded

    def wrap_streaming(self, behavior: Behavior, method: str) -> Behavior:
        if not method.startswith(self._prefix):
            return behavior
        check = self._check

        def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            check(method, context)
            yield from behavior(request, context)

        return guarded
