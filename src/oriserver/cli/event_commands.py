"""``ori totals`` and ``ori events``: read the event log over the ori.events.v1 API.

``ori events --follow`` outlives server restarts: the server ends open streams with
UNAVAILABLE when it shuts down, and the follower subscribes again after the last
position it printed, so nothing is skipped or printed twice.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TextIO, cast

import grpc
from google.protobuf import json_format

from oriserver._generated.ori.events.v1 import events_pb2 as pb
from oriserver._generated.ori.events.v1 import events_pb2_grpc as pb_grpc
from oriserver.cli.arguments import non_negative, positive
from oriserver.recording.backoff import Backoff

AddCommand = Callable[[str, str, str], argparse.ArgumentParser]

METHOD_CHOICES = {"summation": pb.METHOD_SUMMATION, "factorial": pb.METHOD_FACTORIAL}
# A restarting or unreachable server (UNAVAILABLE), too many subscriptions or a subscriber
# that fell behind (RESOURCE_EXHAUSTED): the server asks for a retry. Anything else ends it.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# A resubscription still open after this long is back; a refused one fails at once.
CONFIRM_SECONDS = 1.0

TYPE_CHOICES = {
    "requested": pb.EVENT_TYPE_CALCULATION_REQUESTED,
    "succeeded": pb.EVENT_TYPE_CALCULATION_SUCCEEDED,
    "failed": pb.EVENT_TYPE_CALCULATION_FAILED,
}


NAMES = frozenset({"totals", "events"})  # the commands that read the log (and send a token)


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
        help="first log position to print (default: the first retained one, or the next new "
        "event with --follow); a position that was archived is refused",
    )
    events.add_argument(
        "--limit",
        type=positive,
        default=None,
        metavar="N",
        help="print at most N events (default: 100 without --follow, no limit with it)",
    )
    events.add_argument(
        "--follow",
        action="store_true",
        help="keep streaming new events until interrupted, reconnecting when the server restarts",
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
    position = args.start or 0  # 0: where the retained log begins
    while remaining > 0:
        request = pb.ListEventsRequest(
            from_position=position, page_size=min(remaining, 1000), method=method, type=kind
        )
        reply = stub.ListEvents(request, timeout=args.timeout)
        if position == (args.start or 0):
            _say_where_the_log_begins(reply.first_position)
        for event in reply.events:
            _print_event(event, args.json, out)
        remaining -= len(reply.events)
        if not reply.events or reply.next_from_position > reply.head_position:
            break
        position = reply.next_from_position
    return 0


def _say_where_the_log_begins(first: int) -> None:
    if first > 1:
        print(
            f"ori: the log begins at position {first}; older events were archived",
            file=sys.stderr,
            flush=True,
        )


class _Outage:
    """Says once per outage on stderr that the stream is lost, then that it is back,
    and paces the attempts in between (capped exponential backoff with jitter)."""

    def __init__(self, err: TextIO) -> None:
        self._err = err
        self._backoff = Backoff(base=0.25, cap=5.0)
        self.active = False

    def lost(self, reason: str) -> None:
        if not self.active:
            self.active = True
            print(f"ori: event stream lost ({reason}); reconnecting", file=self._err, flush=True)
        time.sleep(self._backoff.next_delay())

    def back(self, position: int) -> None:
        self.active = False
        self._backoff.reset()
        print(f"ori: reconnected; following from position {position}", file=self._err, flush=True)


def _reason(error: grpc.RpcError) -> str:
    call = cast("grpc.Call", error)
    details = " ".join((call.details() or "").split())  # one line, whatever grpc put there
    return f"{call.code().name}: {details}"


def _confirm(stream: grpc.Future[object]) -> None:
    """Return once the new subscription has stayed open for a moment; raise if it failed."""
    try:
        # grpc-stubs leaves out the timeout that grpc.Future.exception takes.
        failure = stream.exception(timeout=CONFIRM_SECONDS)  # type: ignore[call-arg]
    except grpc.FutureTimeoutError:
        return
    if isinstance(failure, grpc.RpcError):
        raise failure


def _follow(
    stub: pb_grpc.EventsServiceStub, args: argparse.Namespace, method: int, kind: int, out: TextIO
) -> int:
    # First contact: a server that is down, or has no events API, ends the follower at once.
    head = stub.ListEvents(pb.ListEventsRequest(page_size=1), timeout=args.timeout).head_position
    position = head + 1 if args.start is None else args.start  # like tail -f by default
    remaining = args.limit
    outage = _Outage(sys.stderr)
    while True:
        request = pb.SubscribeEventsRequest(from_position=position, method=method, type=kind)  # type: ignore[arg-type]
        try:
            stream = stub.SubscribeEvents(request)  # no deadline
            if outage.active:
                _confirm(cast("grpc.Future[object]", stream))
                outage.back(position)
            for reply in stream:
                _print_event(reply.event, args.json, out)
                position = reply.event.position + 1
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return 0
        except grpc.RpcError as error:
            if cast("grpc.Call", error).code() not in RETRYABLE:
                raise
            outage.lost(_reason(error))
        else:
            outage.lost("the server ended the stream")
