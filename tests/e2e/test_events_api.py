"""The ori.events.v1 API through a real server: totals, pages, filters and live streams."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import replace

import grpc
import pytest

from oriserver._generated import mathhelper_pb2 as mh
from oriserver._generated import mathhelper_pb2_grpc as mh_grpc
from oriserver._generated.ori.events.v1 import events_pb2 as pb
from oriserver._generated.ori.events.v1 import events_pb2_grpc as pb_grpc
from oriserver.config import Settings
from oriserver.config.api import ApiSettings
from oriserver.store.factory import open_store
from tests.support.engines import both_engines
from tests.support.events import many
from tests.support.servers import ServerThread, running_server

engine = both_engines  # every test here runs on grpcio and on pygrpc-native


def wait_until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def calculate(channel: grpc.Channel, summations: int, factorials: list[int]) -> None:
    stub = mh_grpc.MathHelperStub(channel)
    for i in range(summations):
        stub.Summation(mh.SummationInput(first=i, last=1), timeout=5)
    for base in factorials:
        with contextlib.suppress(grpc.RpcError):  # negative and large bases fail on purpose
            stub.Factorial(mh.FactorialInput(base=base), timeout=5)


@pytest.fixture
def events(channel: grpc.Channel) -> pb_grpc.EventsServiceStub:
    return pb_grpc.EventsServiceStub(channel)


def test_totals_count_every_calculation(
    channel: grpc.Channel, events: pb_grpc.EventsServiceStub
) -> None:
    calculate(channel, summations=5, factorials=[3, 4, -1, 30])

    def totals() -> dict[str, tuple[int, int, int]]:
        reply = events.GetRunningTotals(pb.GetRunningTotalsRequest(), timeout=5)
        return {
            pb.Method.Name(t.method): (t.requested, t.succeeded, t.failed) for t in reply.totals
        }

    wait_until(lambda: totals() == {"METHOD_SUMMATION": (5, 5, 0), "METHOD_FACTORIAL": (4, 2, 2)})
    reply = events.GetRunningTotals(pb.GetRunningTotalsRequest(), timeout=5)
    assert reply.checkpoint_position == reply.head_position == 18


def test_events_carry_inputs_outcome_caller_and_instance(
    channel: grpc.Channel, events: pb_grpc.EventsServiceStub
) -> None:
    calculate(channel, summations=1, factorials=[-2])
    wait_until(lambda: len(events.ListEvents(pb.ListEventsRequest(), timeout=5).events) == 4)
    listed = events.ListEvents(pb.ListEventsRequest(), timeout=5).events
    requested, succeeded, _, failed = listed
    assert requested.type == pb.EVENT_TYPE_CALCULATION_REQUESTED
    assert (requested.first, requested.last) == (0, 1)
    assert succeeded.result == 1
    assert requested.calculation_id == succeeded.calculation_id != failed.calculation_id
    assert failed.base == -2
    assert failed.status_code == "INVALID_ARGUMENT"
    assert "undefined for negative numbers" in failed.error_message
    assert requested.client_ip == "127.0.0.1"
    assert requested.instance_id == "test-instance"
    assert requested.occurred_at.ToDatetime() <= succeeded.created_at.ToDatetime()
    assert len({e.event_id for e in listed}) == 4


def test_pages_walk_the_whole_log_in_order(
    server: ServerThread, events: pb_grpc.EventsServiceStub, settings: Settings
) -> None:
    store = open_store(settings.events.database)
    store.append(many(10))
    store.close()
    seen: list[int] = []
    position = 0
    while True:
        reply = events.ListEvents(
            pb.ListEventsRequest(from_position=position, page_size=3), timeout=5
        )
        seen.extend(e.position for e in reply.events)
        if not reply.events:
            break
        position = reply.next_from_position
    assert seen == list(range(1, 21))


def test_filters_select_by_method_and_type(
    server: ServerThread, events: pb_grpc.EventsServiceStub, settings: Settings
) -> None:
    from oriserver.domain.events import Method

    store = open_store(settings.events.database)
    store.append(many(3, Method.SUMMATION) + many(3, Method.FACTORIAL))
    store.close()
    request = pb.ListEventsRequest(
        method=pb.METHOD_FACTORIAL, type=pb.EVENT_TYPE_CALCULATION_FAILED
    )
    reply = events.ListEvents(request, timeout=5)
    assert [(e.method, e.type) for e in reply.events] == [
        (pb.METHOD_FACTORIAL, pb.EVENT_TYPE_CALCULATION_FAILED)
    ]
    assert reply.next_from_position == reply.head_position + 1


@pytest.mark.parametrize(
    "request_",
    [
        pb.ListEventsRequest(from_position=-1),
        pb.ListEventsRequest(page_size=-5),
        pb.ListEventsRequest(method=99),  # type: ignore[arg-type]
        pb.ListEventsRequest(type=42),  # type: ignore[arg-type]
    ],
)
def test_bad_list_requests_are_invalid_arguments(
    events: pb_grpc.EventsServiceStub, request_: pb.ListEventsRequest
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        events.ListEvents(request_, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_page_sizes_are_capped(settings: Settings) -> None:
    capped = replace(settings, api=ApiSettings(max_page_size=4, default_page_size=2))
    with running_server(capped) as server, grpc.insecure_channel(server.target) as channel:
        store = open_store(settings.events.database)
        store.append(many(10))
        store.close()
        stub = pb_grpc.EventsServiceStub(channel)
        assert len(stub.ListEvents(pb.ListEventsRequest(page_size=1000), timeout=5).events) == 4
        assert len(stub.ListEvents(pb.ListEventsRequest(), timeout=5).events) == 2


def test_a_subscription_catches_up_then_streams_live_events(
    channel: grpc.Channel, events: pb_grpc.EventsServiceStub
) -> None:
    calculate(channel, summations=2, factorials=[])
    stream = events.SubscribeEvents(pb.SubscribeEventsRequest(from_position=1), timeout=20)
    received: list[pb.Event] = []

    def read() -> None:
        try:
            for reply in stream:
                received.append(reply.event)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_until(lambda: len(received) == 4)
    calculate(channel, summations=0, factorials=[5])
    wait_until(lambda: len(received) == 6)
    stream.cancel()
    reader.join(5)
    assert [e.position for e in received] == [1, 2, 3, 4, 5, 6]
    assert received[-1].result == 120


def test_a_filtered_subscription_skips_other_events(
    channel: grpc.Channel, events: pb_grpc.EventsServiceStub
) -> None:
    stream = events.SubscribeEvents(
        pb.SubscribeEventsRequest(type=pb.EVENT_TYPE_CALCULATION_FAILED), timeout=20
    )
    calculate(channel, summations=3, factorials=[-1, 2, 99])
    first = next(stream).event
    second = next(stream).event
    stream.cancel()
    assert [first.base, second.base] == [-1, 99]


def test_subscriptions_beyond_the_limit_are_refused(settings: Settings) -> None:
    limited = replace(settings, api=ApiSettings(max_subscriptions=1))
    with running_server(limited) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.EventsServiceStub(channel)
        calculate(channel, summations=1, factorials=[])
        first = stub.SubscribeEvents(pb.SubscribeEventsRequest(), timeout=20)
        assert next(first).event.position == 1
        with pytest.raises(grpc.RpcError) as caught:
            next(stub.SubscribeEvents(pb.SubscribeEventsRequest(), timeout=5))
        first.cancel()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many live subscriptions" in caught.value.details()


def test_a_subscriber_that_stops_reading_is_disconnected(settings: Settings) -> None:
    impatient = replace(settings, api=ApiSettings(subscriber_write_timeout_s=0.5))
    # Without BDP probing the client's receive window stays at its initial size,
    # as for a client that reads slowly; otherwise grpc would buffer megabytes for it.
    slow_client = [("grpc.http2.bdp_probe", 0)]
    with (
        running_server(impatient) as server,
        grpc.insecure_channel(server.target, options=slow_client) as channel,
    ):
        store = open_store(settings.events.database)
        store.append(many(5000))  # far more than HTTP/2 flow control lets through unread
        store.close()
        stream = pb_grpc.EventsServiceStub(channel).SubscribeEvents(
            pb.SubscribeEventsRequest(), timeout=20
        )
        next(stream)
        time.sleep(3)  # stop reading: the server's writes stall, then it gives up
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stream:
                pass
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "subscriber too slow" in caught.value.details()
    assert "resubscribe with from_position=" in caught.value.details()


def test_a_cancelled_subscription_is_not_an_error(
    channel: grpc.Channel, events: pb_grpc.EventsServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    """Clients cancel streams all the time: at once, mid-catch-up or while waiting for more."""
    calculate(channel, summations=20, factorials=[])
    caplog.set_level(logging.WARNING)
    for i in range(60):
        stream = events.SubscribeEvents(pb.SubscribeEventsRequest(from_position=1), timeout=20)
        for _ in range(i % 4 * 15):  # 0, 15, 30 or 45 events read: the last waits for more
            if i % 4 == 3 and _ == 40:
                break
            next(stream)
        if i % 3 == 0:
            time.sleep(0.01)  # now and then the server is already blocked sending or waiting
        stream.cancel()
    calculate(channel, summations=1, factorials=[])  # the server still answers
    time.sleep(0.5)  # the handlers notice the cancels
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
