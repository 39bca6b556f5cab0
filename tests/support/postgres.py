"""A real PostgreSQL for tests: ORI_TEST_DATABASE_URL, or a throwaway pgserver instance."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

TABLES = ("events", "running_totals", "checkpoints", "leases")


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
