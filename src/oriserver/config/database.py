"""Database URLs: which backend, where, and how to show them without secrets.

A PostgreSQL URL is read by libpq's own parser (through psycopg), so what is
checked and redacted here is what the driver will use. psycopg is imported
inside the functions that need it, so importing the settings stays light.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}

# libpq's parser keeps these as text and checks them only when it connects, so a
# bad value would start a server that retries forever; these are libpq 18's values.
_LIBPQ_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "sslcertmode": ("disable", "allow", "require"),
    "sslnegotiation": ("postgres", "direct"),
    "load_balance_hosts": ("disable", "random"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
}
_LIBPQ_INTEGERS = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)


@dataclass(frozen=True, slots=True, repr=False)
class DatabaseUrl:
    """A parsed ORI_DATABASE_URL; ``url`` is what the drivers receive."""

    dialect: Dialect
    url: str
    sqlite_path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> DatabaseUrl:
        """Raise ValueError with a one-line message that never contains a password."""
        scheme, sep, rest = text.partition("://")
        if not sep:
            raise ValueError("must look like sqlite:///path/to/file.db or postgresql://host/db")
        scheme = scheme.lower()
        if scheme == "sqlite":
            path = rest[1:] if rest.startswith("/") else ""
            if not path or path == ":memory:":
                raise ValueError("a SQLite URL needs a file path, as in sqlite:///oriserver.db")
            return cls("sqlite", f"sqlite:///{path}", Path(path))
        if scheme in _POSTGRES_SCHEMES:
            url = "postgresql://" + rest
            check_postgres_options(_libpq_options(url))
            return cls("postgresql", url)
        raise ValueError("only sqlite:/// and postgresql:// URLs are supported")

    def __repr__(self) -> str:
        # Settings may end up in a traceback or a debug line: never with the password.
        return f"DatabaseUrl({self.redacted()!r})"

    def redacted(self) -> str:
        """Safe for logs: the URL itself when libpq finds no secret in it; otherwise
        libpq's key=value form of it with every secret shown as ***."""
        if self.dialect != "postgresql":
            return self.url
        from psycopg.conninfo import make_conninfo

        options = _libpq_options(self.url)
        secrets = secret_options() & options.keys()
        if not secrets:
            return self.url
        return make_conninfo("", **{k: "***" if k in secrets else v for k, v in options.items()})


@functools.cache
def secret_options() -> frozenset[str]:
    """The options libpq itself will not display: passwords ("*") and debug options
    ("D", among them the SCRAM keys, which authenticate as well as a password)."""
    from psycopg import pq

    return frozenset(
        option.keyword.decode()
        for option in pq.Conninfo.get_defaults()
        if option.dispchar in (b"*", b"D")
    )


def _libpq_options(url: str) -> dict[str, str]:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except ProgrammingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "not a valid URL"
        raise ValueError(f"libpq cannot read it: {_scrubbed(reason, url)}") from None


def _scrubbed(message: str, url: str) -> str:
    """libpq quotes the offending part, sometimes the whole URL. The URL it could not
    parse cannot be redacted with its parser, so every text that may be a password
    (after ``user:`` and each query value) is masked by hand."""
    rest = url.partition("://")[2]
    userinfo = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[0]
    query = rest.partition("?")[2]
    candidates = {userinfo.partition(":")[2]} | {p.partition("=")[2] for p in query.split("&")}
    for candidate in sorted(candidates - {""}, key=len, reverse=True):
        message = message.replace(candidate, "***")
    return message


def check_postgres_options(options: dict[str, str]) -> None:
    """What libpq would refuse only when connecting, refused now; messages name the
    option but not its value, which a malformed URL may have taken from a password."""
    if not options.get("dbname"):
        # libpq would fall back to PGDATABASE or the user name: the URL alone must
        # say which database holds the events.
        raise ValueError("names no database; add it as the path, as in postgresql://host/db")
    hosts = options.get("host", "").split(",")
    ports = options.get("port", "").split(",")
    if len(ports) > 1 and len(ports) != len(hosts):
        raise ValueError(f"has {len(ports)} ports for {len(hosts)} hosts")
    if not all(not port or (port.isdigit() and 1 <= int(port) <= 65535) for port in ports):
        raise ValueError("the port must be a number from 1 to 65535")
    for name in _LIBPQ_INTEGERS:
        if name in options and not options[name].strip().lstrip("-").isdigit():
            raise ValueError(f"{name} must be a whole number")
    for name, allowed in _LIBPQ_CHOICES.items():
        if name in options and options[name] not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}")
