"""PostgreSQL for benchmark runs: the configured server or a throwaway one, a fresh database per run."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sqlite3
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

# One CalculationSucceeded event per successful call (each call also records a Requested event).
SUCCEEDED = "SELECT count(*) FROM events WHERE event_type = 'CalculationSucceeded'"
SUCCEEDED_KEY = "events: CalculationSucceeded"


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


class Postgres:
    """Hands out a fresh, uniquely named database per run, and drops it afterwards."""

    def __init__(
        self, admin_url: str, source: str, pid: int | None, close: Callable[[], None]
    ) -> None:
        self.admin_url = admin_url
        self.source = source
        self.pid = pid  # the postmaster, when it runs on this machine and we know it
        self._close = close
        self._names = (f"oribench_{os.getpid()}_{n}" for n in itertools.count(1))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        self.version = str(row[0]) if row else "?"

    @classmethod
    def start(cls, environ: Mapping[str, str]) -> Postgres:
        """ORI_BENCH_DATABASE_URL, else ORI_TEST_DATABASE_URL, else a throwaway pgserver."""
        for variable in ("ORI_BENCH_DATABASE_URL", "ORI_TEST_DATABASE_URL"):
            url = environ.get(variable, "").strip()
            if url:
                return cls(url, f"from {variable}", None, lambda: None)
        data_dir = Path(tempfile.mkdtemp(prefix="oribench-pg-"))
        try:
            with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                import pgserver

                server = pgserver.get_server(data_dir, cleanup_mode="stop")
        except BaseException:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise

        def close() -> None:
            try:
                server.cleanup()
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)

        try:
            return cls(server.get_uri(), "throwaway (pgserver)", server.get_pid(), close)
        except BaseException:
            close()
            raise

    def create_database(self) -> str:
        """CREATE DATABASE with a name no other run uses; returns its URL."""
        name = next(self._names)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return with_database(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def close(self) -> None:
        self._close()


def postgres_rows(url: str) -> dict[str, int]:
    """Row count of every user table in the database at url, and of successful-call events."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT schemaname, relname FROM pg_stat_user_tables ORDER BY schemaname, relname"
        ).fetchall()
        counts = {}
        for schema, table in tables:
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            row = conn.execute(query).fetchone()
            counts[str(table)] = int(row[0]) if row else 0
        if "events" in counts:
            row = conn.execute(SUCCEEDED).fetchone()
            counts[SUCCEEDED_KEY] = int(row[0]) if row else 0
    return counts


def sqlite_rows(path: Path) -> dict[str, int]:
    """The same counts for a SQLite file (none when the file was never created)."""
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        counts = {
            name: int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])  # noqa: S608
            for name in names
        }
        if "events" in counts:
            counts[SUCCEEDED_KEY] = int(conn.execute(SUCCEEDED).fetchone()[0])
    return counts
