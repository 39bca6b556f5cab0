"""``ori``'s bearer token for the events API: read from a file, sent only where it is safe.

The token is read only for the commands that read the log (``ori totals``,
``ori events``) and goes in the ``authorization`` metadata of ori.events.v1
calls alone (MathHelper and health never need it). It is never sent in plaintext to a host
other than loopback unless ``--allow-insecure-token`` says so: anyone on the path
could read it and then the whole log.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from oriserver.config.env import ConfigError, EnvReader, text, variable

TOKEN_FILE = variable(
    "ORI_TOKEN_FILE",
    "",
    "File whose first line is the bearer token `ori` sends to the events API (`--token-file`).",
    parse=text,
)
EVENTS_PREFIX = "/ori.events.v1."


def add_token_options(group: argparse._ArgumentGroup, default: Callable[[object], object]) -> None:
    group.add_argument(
        "--token-file",
        metavar="PATH",
        default=default(None),
        help="send the bearer token in PATH to the events API (env ORI_TOKEN_FILE)",
    )
    group.add_argument(
        "--allow-insecure-token",
        action="store_true",
        default=default(False),
        help="send the token even over plaintext to a host that is not loopback",
    )


def token_file_default(env: EnvReader) -> str:
    return env.get(TOKEN_FILE)


def _is_loopback(host: str) -> bool:
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _read_token(value: str, name: str) -> str:
    try:
        lines = Path(value).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(name, f"cannot read {value}: {reason}") from None
    for line in lines:
        token = line.strip()
        if token and not token.startswith("#"):
            if any(c.isspace() or not c.isprintable() for c in token):
                raise ConfigError(name, f"{value}: the token must be one word on its first line")
            return token
    raise ConfigError(name, f"{value} holds no token")


def resolve_token(args: argparse.Namespace, env_file: str, host: str, *, tls: bool) -> str | None:
    """The token to send, or None; ConfigError (exit 2) before connecting when it must not go."""
    value, name = (args.token_file, "--token-file") if args.token_file else (env_file, TOKEN_FILE)
    if not value:
        return None
    if not tls and not _is_loopback(host) and not args.allow_insecure_token:
        raise ConfigError(
            name,
            f"refusing to send the token in plaintext to {host}: connect with TLS "
            "(--tls, --ca-file), or pass --allow-insecure-token",
        )
    return _read_token(value, name)


if TYPE_CHECKING:  # grpc-stubs make the interceptors generic; grpc's classes are not
    _Unary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _Stream = grpc.UnaryStreamClientInterceptor[Any, Any]
else:
    _Unary, _Stream = grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor


class _BearerToken(_Unary, _Stream):
    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        if not details.method.startswith(EVENTS_PREFIX):
            return details
        metadata = [*(details.metadata or ()), self._metadata]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


def with_token(channel: grpc.Channel, token: str | None) -> grpc.Channel:
    return channel if token is None else grpc.intercept_channel(channel, _BearerToken(token))
