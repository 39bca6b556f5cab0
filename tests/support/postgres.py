"""A real PostgreSQL for tests: ORI_TEST_DATABASE_URL, or a throwaway pgserver instance."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

TABLES = ("events", "running_totals", "checkpoints", "leases", "log_start")


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a URL of a PostgreSQL server the tests may create databases on."""
    given = os.environ.get("ORI_TEST_DATABASE_URL", "").strip()
    if given:
        yield given
        return
    import pgserver  # started only when no server was given

    with tempfile.TemporaryDirectory(prefix="ori-pg-") as data_dir:
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """Create an empty database with a unique name; drop it afterwards."""
    name = f"ori_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")


def proxied(url: str, port: int) -> str:
    """The same database reached through a local TCP proxy on ``port``."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return f"postgresql://{user}@127.0.0.1:{port}{parts.path}"


def proxy_target(url: str) -> tuple[str, int] | str:
    """Where a FaultProxy must forward to reach the server in ``url`` (TCP or Unix socket)."""
    parts = urlsplit(url)
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    if "host" in query and query["host"].startswith("/"):
        return f"{query['host']}/.s.PGSQL.{query.get('port', '5432')}"
    if parts.hostname and parts.hostname.startswith("/"):
        return f"{parts.hostname}/.s.PGSQL.{parts.port or 5432}"
    return (parts.hostname or "127.0.0.1", parts.port or 5432)
