"""MathHelper through a real server on a real port: results, echoes, status codes."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc
from tests.strategies import INT64_MAX, INT64_MIN, exact_factorial, int64s
from tests.support.engines import both_engines

engine = both_engines  # every test here runs on grpcio and on pygrpc-native


RPC_EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.MathHelperStub:
    return pb_grpc.MathHelperStub(channel)


@RPC_EXAMPLES
@given(first=int64s, last=int64s)
def test_summation_answers_exactly_or_out_of_range(
    stub: pb_grpc.MathHelperStub, first: int, last: int
) -> None:
    exact = first + last
    request = pb.SummationInput(first=first, last=last)
    if INT64_MIN <= exact <= INT64_MAX:
        reply = stub.Summation(request, timeout=5)
        assert (reply.result, reply.first, reply.last) == (exact, first, last)
    else:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Summation(request, timeout=5)
        assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert caught.value.details() == "summation result exceeds maximum integer value"


@RPC_EXAMPLES
@given(base=int64s)
def test_factorial_answers_exactly_or_with_the_right_status(
    stub: pb_grpc.MathHelperStub, base: int
) -> None:
    request = pb.FactorialInput(base=base)
    if base < 0:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Factorial(request, timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "factorial is undefined for negative numbers" in caught.value.details()
    elif base <= 40 and exact_factorial(base) <= INT64_MAX:
        reply = stub.Factorial(request, timeout=5)
        assert (reply.result, reply.base) == (exact_factorial(base), base)
    else:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Factorial(request, timeout=5)
        assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert caught.value.details() == "factorial result exceeds maximum integer value"


@pytest.mark.parametrize("base", [0, 1])
def test_factorial_of_zero_and_one_succeeds(stub: pb_grpc.MathHelperStub, base: int) -> None:
    reply = stub.Factorial(pb.FactorialInput(base=base), timeout=5)
    assert reply.result == 1
    assert reply.base == base


def test_an_empty_request_is_zero_plus_zero(stub: pb_grpc.MathHelperStub) -> None:
    reply = stub.Summation(pb.SummationInput(), timeout=5)
    assert (reply.result, reply.first, reply.last) == (0, 0, 0)
