"""Domain events and totals to ori.events.v1 messages, and request enums back to the domain."""

from __future__ import annotations

from oriserver._generated.ori.events.v1 import events_pb2 as pb
from oriserver.domain.events import (
    CalculationFailed,
    CalculationRequested,
    CalculationSucceeded,
    Event,
    Method,
    StoredEvent,
)
from oriserver.domain.totals import RunningTotals

METHODS: dict[Method, pb.Method.ValueType] = {
    Method.SUMMATION: pb.METHOD_SUMMATION,
    Method.FACTORIAL: pb.METHOD_FACTORIAL,
}
EVENT_TYPES: dict[type[Event], pb.EventType.ValueType] = {
    CalculationRequested: pb.EVENT_TYPE_CALCULATION_REQUESTED,
    CalculationSucceeded: pb.EVENT_TYPE_CALCULATION_SUCCEEDED,
    CalculationFailed: pb.EVENT_TYPE_CALCULATION_FAILED,
}
METHODS_BACK = {v: k for k, v in METHODS.items()}
EVENT_TYPES_BACK = {v: k for k, v in EVENT_TYPES.items()}


def method_filter(value: pb.Method.ValueType) -> Method | None:
    """None for UNSPECIFIED; ValueError for a number this server does not know."""
    if value == pb.METHOD_UNSPECIFIED:
        return None
    if value not in METHODS_BACK:
        raise ValueError(f"unknown method {value}")
    return METHODS_BACK[value]


def type_filter(value: pb.EventType.ValueType) -> type[Event] | None:
    if value == pb.EVENT_TYPE_UNSPECIFIED:
        return None
    if value not in EVENT_TYPES_BACK:
        raise ValueError(f"unknown event type {value}")
    return EVENT_TYPES_BACK[value]


def event_message(stored: StoredEvent) -> pb.Event:
    event = stored.event
    message = pb.Event(
        position=stored.position,
        event_id=str(event.event_id),
        calculation_id=str(event.calculation_id),
        type=EVENT_TYPES[type(event)],
        method=METHODS[event.method],
        client_ip=event.client_ip or "",
        instance_id=event.instance_id,
        trace_id=event.trace_id or "",
    )
    message.occurred_at.FromDatetime(event.occurred_at)
    message.created_at.FromDatetime(stored.created_at)
    if event.inputs.first is not None:
        message.first = event.inputs.first
    if event.inputs.last is not None:
        message.last = event.inputs.last
    if event.inputs.base is not None:
        message.base = event.inputs.base
    if isinstance(event, CalculationSucceeded):
        message.result = event.result
    elif isinstance(event, CalculationFailed):
        message.status_code = event.code.value
        message.error_message = event.message
    return message


def totals_message(
    totals: RunningTotals, checkpoint: int, head: int
) -> pb.GetRunningTotalsResponse:
    response = pb.GetRunningTotalsResponse(checkpoint_position=checkpoint, head_position=head)
    for method in Method:
        counts = totals.of(method)
        response.totals.add(
            method=METHODS[method],
            requested=counts.requested,
            succeeded=counts.succeeded,
            failed=counts.failed,
        )
    return response
