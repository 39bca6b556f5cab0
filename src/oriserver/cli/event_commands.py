"""``ori totals`` and ``ori events``: read the event log over the ori.events.v1 API."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TextIO

import grpc
from google.protobuf import json_format

from oriserver._generated.ori.events.v1 import events_pb2 as pb
from oriserver._generated.ori.events.v1 import events_pb2_grpc as pb_grpc
from oriserver.cli.arguments import non_negative, positive

AddCommand = Callable[[str, str, str], argparse.ArgumentParser]

METHOD_CHOICES = {"summation": pb.METHOD_SUMMATION, "factorial": pb.METHOD_FACTORIAL}
TYPE_CHOICES = {
    "requested": pb.EVENT_TYPE_CALCULATION_REQUESTED,
    "succeeded": pb.EVENT_TYPE_CALCULATION_SUCCEEDED,
    "failed": pb.EVENT_TYPE_CALCULATION_FAILED,
}


def register(command: AddCommand) -> None:
    command("totals", "print the running totals per method", "ori totals --json")
    events = command(
        "events",
        "print stored events in log order (--follow streams new ones)",
        "ori events --from 1 --limit 20\n  ori events --follow --method factorial",
    )
    events.add_argument(
        "--from",
        dest="start",
        type=non_negative,
        default=None,
        metavar="N",
        help="first log position to print (default: 1, or the next new event with --follow)",
    )
    events.add_argument(
        "--limit",
        type=positive,
        default=None,
        metavar="N",
        help="print at most N events (default: 100 without --follow, no limit with it)",
    )
    events.add_argument(
        "--follow", action="store_true", help="keep streaming new events until interrupted"
    )
    events.add_argument("--method", choices=sorted(METHOD_CHOICES), help="only this method")
    events.add_argument(
        "--type", dest="event_type", choices=sorted(TYPE_CHOICES), help="only this event type"
    )


def _line(event: pb.Event) -> str:
    kind = pb.EventType.Name(event.type).removeprefix("EVENT_TYPE_CALCULATION_").lower()
    method = pb.Method.Name(event.method).removeprefix("METHOD_").lower()
    inputs = " ".join(
        f"{name}={getattr(event, name)}"
        for name in ("first", "last", "base")
        if event.HasField(name)
    )
    outcome = ""
    if event.HasField("result"):
        outcome = f" -> {event.result}"
    elif event.status_code:
        outcome = f" -> {event.status_code}: {event.error_message}"
    when = event.occurred_at.ToDatetime().isoformat(timespec="milliseconds")
    caller = event.client_ip or "-"
    return f"{event.position:>8} {when} {kind:<9} {method} {inputs}{outcome} [{caller} @ {event.instance_id}]"


def _print_event(event: pb.Event, as_json: bool, out: TextIO) -> None:
    if as_json:
        text = json_format.MessageToDict(event, preserving_proto_field_name=True)
        print(json.dumps(text, separators=(",", ":")), file=out, flush=True)
    else:
        print(_line(event), file=out, flush=True)


def totals(args: argparse.Namespace, channel: grpc.Channel, out: TextIO) -> int:
    reply = pb_grpc.EventsServiceStub(channel).GetRunningTotals(
        pb.GetRunningTotalsRequest(), timeout=args.timeout
    )
    if args.json:
        print(
            json_format.MessageToJson(
                reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            ),
            file=out,
        )
        return 0
    print(f"{'method':<10} {'requested':>10} {'succeeded':>10} {'failed':>10}", file=out)
    for row in reply.totals:
        name = pb.Method.Name(row.method).removeprefix("METHOD_").capitalize()
        print(f"{name:<10} {row.requested:>10} {row.succeeded:>10} {row.failed:>10}", file=out)
    lag = reply.head_position - reply.checkpoint_position
    print(
        f"(includes the log up to position {reply.checkpoint_position}; head {reply.head_position}, lag {lag})",
        file=out,
    )
    return 0


def events(args: argparse.Namespace, channel: grpc.Channel, out: TextIO) -> int:
    stub = pb_grpc.EventsServiceStub(channel)
    method = METHOD_CHOICES.get(args.method or "", pb.METHOD_UNSPECIFIED)
    kind = TYPE_CHOICES.get(args.event_type or "", pb.EVENT_TYPE_UNSPECIFIED)
    if args.follow:
        return _follow(stub, args, method, kind, out)
    remaining = args.limit or 100
    position = args.start or 1
    while remaining > 0:
        request = pb.ListEventsRequest(
            from_position=position, page_size=min(remaining, 1000), method=method, type=kind
        )
        reply = stub.ListEvents(request, timeout=args.timeout)
        for event in reply.events:
            _print_event(event, args.json, out)
        remaining -= len(reply.events)
        if not reply.events or reply.next_from_position > reply.head_position:
            break
        position = reply.next_from_position
    return 0


def _follow(
    stub: pb_grpc.EventsServiceStub, args: argparse.Namespace, method: int, kind: int, out: TextIO
) -> int:
    start = args.start
    if start is None:  # like tail -f: only what happens from now on
        head = stub.ListEvents(
            pb.ListEventsRequest(page_size=1), timeout=args.timeout
        ).head_position
        start = head + 1
    request = pb.SubscribeEventsRequest(from_position=start, method=method, type=kind)  # type: ignore[arg-type]
    for printed, reply in enumerate(stub.SubscribeEvents(request), start=1):  # no deadline
        _print_event(reply.event, args.json, out)
        if args.limit is not None and printed >= args.limit:
            break
    return 0
