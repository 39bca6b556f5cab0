"""A client built for the Go server works unchanged: same method paths, same bytes.

These tests do not use the generated stubs. They encode requests and decode
replies by hand from the wire format the legacy .proto defines, as any other
client implementation would.
"""

from __future__ import annotations

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.strategies import INT64_MAX, INT64_MIN
from tests.support.engines import both_engines
from tests.support.protowire import UINT64_MASK, read_varint, varint

engine = both_engines  # every test here runs on grpcio and on pygrpc-native


def _encode(fields: dict[int, int]) -> bytes:
    return b"".join(
        varint(number << 3) + varint(value & UINT64_MASK)  # int64 negatives: ten bytes
        for number, value in fields.items()
        if value
    )


def _decode(data: bytes) -> dict[int, int]:
    fields: dict[int, int] = {}
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        assert key & 7 == 0, "every field of the legacy messages is a varint"
        value, i = read_varint(data, i)
        fields[key >> 3] = value - (1 << 64) if value >= 1 << 63 else value
    return fields


def _raw(channel: grpc.Channel, path: str, payload: bytes) -> bytes:
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    return call(payload, timeout=5)


@pytest.mark.parametrize(
    ("first", "last"), [(2, 40), (-7, 3), (INT64_MAX, 0), (INT64_MIN, 0), (INT64_MAX, INT64_MIN)]
)
def test_summation_path_and_field_numbers_match_the_legacy_proto(
    channel: grpc.Channel, first: int, last: int
) -> None:
    reply = _decode(_raw(channel, "/MathHelper/Summation", _encode({1: first, 2: last})))
    assert reply.get(1, 0) == first + last  # result = 1
    assert reply.get(2, 0) == first  # first = 2
    assert reply.get(3, 0) == last  # last = 3


def test_factorial_path_and_field_numbers_match_the_legacy_proto(channel: grpc.Channel) -> None:
    reply = _decode(_raw(channel, "/MathHelper/Factorial", _encode({1: 20})))
    assert reply == {1: 2432902008176640000, 2: 20}


def test_errors_use_the_go_servers_status_codes(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _raw(channel, "/MathHelper/Factorial", _encode({1: 21}))
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_there_is_no_package_prefix_on_the_service(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _raw(channel, "/mathhelper.MathHelper/Summation", _encode({1: 1}))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_lists_the_service_for_grpcurl_style_tools(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in responses[0].list_services_response.service}
    assert "MathHelper" in names
    assert "grpc.health.v1.Health" in names
