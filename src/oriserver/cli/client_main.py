"""``ori``: call a running oriserver from the command line.

Results go to stdout alone (or as JSON with --json). Errors go to stderr as
``ori: <STATUS_CODE>: <message>`` with exit code 1; usage errors exit 2 before
any connection is made.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import cast

import grpc

from oriserver import __version__
from oriserver.cli import client_commands, client_tls, client_token, event_commands
from oriserver.cli.arguments import int64, port, positive_seconds
from oriserver.cli.client_config import ClientDefaults, client_defaults
from oriserver.config.env import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _connection_options(
    defaults: ClientDefaults, *, in_subcommand: bool
) -> argparse.ArgumentParser:
    """The global options, accepted before or after the command name."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")

    def default(value: object) -> object:
        # Sub-parsers must not overwrite a value given before the command name.
        return argparse.SUPPRESS if in_subcommand else value

    group.add_argument(
        "--host",
        default=default(defaults.host),
        help="server host (env ORI_HOST; default localhost)",
    )
    group.add_argument(
        "--port",
        type=port,
        default=default(defaults.port),
        help="server port (env ORI_PORT; default 50051)",
    )
    group.add_argument(
        "--timeout",
        type=positive_seconds,
        default=default(5.0),
        metavar="SECONDS",
        help="deadline for each call (default 5)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the whole response message as JSON",
    )
    client_tls.add_tls_options(group, default)
    client_token.add_token_options(group, default)
    return parent


def build_parser(defaults: ClientDefaults) -> argparse.ArgumentParser:
    top = _connection_options(defaults, in_subcommand=False)
    sub = _connection_options(defaults, in_subcommand=True)
    parser = argparse.ArgumentParser(
        prog="ori",
        parents=[top],
        description="Command-line client for oriserver's MathHelper API.",
        epilog="examples:\n  ori summation 2 40\n  ori factorial -5\n  ori --host db.example --json health",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ori {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            parents=[sub],
            help=help_text,
            description=help_text + ".",
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    summation = command(
        "summation", "add two 64-bit integers (FIRST + LAST)", "ori summation 2 40   # prints 42"
    )
    summation.add_argument("first", type=int64, metavar="FIRST", help="first addend (int64)")
    summation.add_argument("last", type=int64, metavar="LAST", help="second addend (int64)")
    factorial = command(
        "factorial", "compute BASE! for 0 <= BASE <= 20", "ori factorial 5   # prints 120"
    )
    factorial.add_argument(
        "base",
        type=int64,
        metavar="BASE",
        help="the base (int64; negatives are refused by the server)",
    )
    health = command(
        "health",
        "print the server's health status (exit 1 unless SERVING)",
        "ori health --service MathHelper",
    )
    health.add_argument(
        "--service", default="", help="a service name; empty (the default) is the whole server"
    )
    client_commands.add_event_commands(command)
    return parser


def _target(host: str, port_number: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port_number}"


def describe_rpc_error(error: grpc.RpcError) -> str:
    """'CODE: details' for a failed call (grpc raises errors that are also grpc.Call)."""
    call = cast("grpc.Call", error)
    code = call.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = call.details() if callable(getattr(error, "details", None)) else str(error)
    return f"{code.name}: {details}"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        defaults = client_defaults(os.environ)  # noqa: TID251 - the client's one read of its environment
    except ConfigError as error:
        print(f"ori: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    args = build_parser(defaults).parse_args(argv)
    try:
        tls = client_tls.resolve_tls(args, defaults.tls)
        token = None
        if args.command in event_commands.NAMES:  # no other command needs it
            token = client_token.resolve_token(
                args, defaults.token_file, args.host, tls=tls is not None
            )
    except ConfigError as error:
        print(f"ori: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    channel = client_token.with_token(
        client_tls.open_channel(_target(args.host, args.port), tls), token
    )
    try:
        return client_commands.run(args, channel, sys.stdout)
    except grpc.RpcError as error:
        print(f"ori: {describe_rpc_error(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # e.g. `ori events | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        channel.close()
