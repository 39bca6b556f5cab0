"""What the server must answer to any request body, worked out independently of the server.

Parsing uses the same protobuf runtime as the server (whether bytes parse is
protobuf's decision, not ours); the arithmetic is plain Python integers, not the
project's domain code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2

from oriserver._generated import mathhelper_pb2 as pb
from tests.strategies import INT64_MAX, INT64_MIN, exact_factorial

SUMMATION = "/MathHelper/Summation"
FACTORIAL = "/MathHelper/Factorial"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
METHODS = (SUMMATION, FACTORIAL, HEALTH_CHECK)

RECEIVE_LIMIT = 64 * 1024
LARGEST_FACTORIAL_BASE = max(n for n in range(30) if exact_factorial(n) <= INT64_MAX)
UNPARSEABLE = "grpc: error unmarshalling request"
# Health answers SERVING for the whole server and these services; NOT_FOUND for others.
HEALTHY_SERVICES = frozenset({"", "MathHelper"})
OTHER_REGISTERED_SERVICES = frozenset({"ori.events.v1.EventsService"})


@dataclass(frozen=True)
class Expected:
    code: grpc.StatusCode
    reply: Message | None = None  # compared field by field when the call succeeds
    details: str | None = None  # compared exactly when set


def _parse(method: str, payload: bytes) -> Message | None:
    kind: type[Message] = {
        SUMMATION: pb.SummationInput,
        FACTORIAL: pb.FactorialInput,
        HEALTH_CHECK: health_pb2.HealthCheckRequest,
    }[method]
    try:
        return kind.FromString(payload)
    except DecodeError:
        return None


def _summation(request: pb.SummationInput) -> Expected:
    total = request.first + request.last
    if not INT64_MIN <= total <= INT64_MAX:
        return Expected(grpc.StatusCode.OUT_OF_RANGE)
    reply = pb.SummationResult(result=total, first=request.first, last=request.last)
    return Expected(grpc.StatusCode.OK, reply)


def _factorial(request: pb.FactorialInput) -> Expected:
    if request.base < 0:
        return Expected(grpc.StatusCode.INVALID_ARGUMENT)
    if request.base > LARGEST_FACTORIAL_BASE:
        return Expected(grpc.StatusCode.OUT_OF_RANGE)
    reply = pb.FactorialResult(result=exact_factorial(request.base), base=request.base)
    return Expected(grpc.StatusCode.OK, reply)


def _health(request: health_pb2.HealthCheckRequest) -> Expected:
    if request.service in HEALTHY_SERVICES:
        serving = health_pb2.HealthCheckResponse.SERVING
        return Expected(grpc.StatusCode.OK, health_pb2.HealthCheckResponse(status=serving))
    if request.service in OTHER_REGISTERED_SERVICES:
        return Expected(grpc.StatusCode.OK)  # its status follows the event store's health
    return Expected(grpc.StatusCode.NOT_FOUND)


def expected(method: str, payload: bytes) -> Expected:
    """The status (and reply) the server owes this body on this method."""
    if len(payload) > RECEIVE_LIMIT:
        return Expected(grpc.StatusCode.RESOURCE_EXHAUSTED)
    request = _parse(method, payload)
    if request is None:
        return Expected(grpc.StatusCode.INVALID_ARGUMENT, details=UNPARSEABLE)
    if isinstance(request, pb.SummationInput):
        return _summation(request)
    if isinstance(request, pb.FactorialInput):
        return _factorial(request)
    assert isinstance(request, health_pb2.HealthCheckRequest)
    return _health(request)


def reply_type(method: str) -> type[Message]:
    return {
        SUMMATION: pb.SummationResult,
        FACTORIAL: pb.FactorialResult,
        HEALTH_CHECK: health_pb2.HealthCheckResponse,
    }[method]


@dataclass(frozen=True)
class Outcome:
    method: str
    payload: bytes
    code: grpc.StatusCode


@dataclass
class Outcomes:
    """Every hostile call made and what it got; what the server recorded is checked against it."""

    calls: list[Outcome] = field(default_factory=list)

    def add(self, method: str, payload: bytes, code: grpc.StatusCode) -> None:
        self.calls.append(Outcome(method, payload, code))

    def ok_payloads(self, method: str) -> list[bytes]:
        """Request bodies the server answered OK: the only ones it may record as calculations."""
        return [
            c.payload for c in self.calls if c.method == method and c.code == grpc.StatusCode.OK
        ]

    def reached_handlers(self) -> list[Outcome]:
        """Calls the server's handlers saw (grpc refuses oversized ones before them)."""
        return [c for c in self.calls if c.code != grpc.StatusCode.RESOURCE_EXHAUSTED]
