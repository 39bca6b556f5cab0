"""What each ``ori`` command sends and prints."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc
from oriserver.cli import event_commands

AddCommand = Callable[[str, str, str], argparse.ArgumentParser]


def as_json(message: Message) -> str:
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def add_event_commands(command: AddCommand) -> None:
    """The event-log commands (totals, events)."""
    event_commands.register(command)


def _summation(args: argparse.Namespace, channel: grpc.Channel, out: TextIO) -> int:
    stub = pb_grpc.MathHelperStub(channel)
    reply = stub.Summation(
        pb.SummationInput(first=args.first, last=args.last), timeout=args.timeout
    )
    print(as_json(reply) if args.json else reply.result, file=out)
    return 0


def _factorial(args: argparse.Namespace, channel: grpc.Channel, out: TextIO) -> int:
    stub = pb_grpc.MathHelperStub(channel)
    reply = stub.Factorial(pb.FactorialInput(base=args.base), timeout=args.timeout)
    print(as_json(reply) if args.json else reply.result, file=out)
    return 0


def _health(args: argparse.Namespace, channel: grpc.Channel, out: TextIO) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(as_json(reply) if args.json else name, file=out)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


COMMANDS: dict[str, Callable[[argparse.Namespace, grpc.Channel, TextIO], int]] = {
    "summation": _summation,
    "factorial": _factorial,
    "health": _health,
    "totals": event_commands.totals,
    "events": event_commands.events,
}


def run(args: argparse.Namespace, channel: grpc.Channel, out: TextIO) -> int:
    return COMMANDS[args.command](args, channel, out)
