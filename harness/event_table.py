"""Reads the events table directly with SQL, as an operator would, to check what was stored."""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from oriserver.config.database import DatabaseUrl


@dataclass(frozen=True)
class StoredCalls:
    """What the events table says about Summation(first=id, last=1) calls."""

    requested: Counter[int]
    outcomes: Counter[int]
    event_ids_unique: bool

    @property
    def answered(self) -> set[int]:
        return set(self.outcomes)

    def unpaired(self) -> set[int]:
        """Calls with a request but no outcome, or an outcome but no request."""
        return set(self.requested) ^ set(self.outcomes)

    def duplicated(self) -> set[int]:
        calls = set(self.requested) | set(self.outcomes)
        return {i for i in calls if self.requested[i] > 1 or self.outcomes[i] > 1}


# One CalculationSucceeded event per successful call (each call also records a Requested event).
SUCCEEDED = "SELECT count(*) FROM events WHERE event_type = 'CalculationSucceeded'"
SUCCEEDED_KEY = "events: CalculationSucceeded"
QUERY = "SELECT event_type, input_first, event_id FROM events WHERE method = 'Summation'"


def stored_calls(database: DatabaseUrl) -> StoredCalls:
    if database.dialect == "sqlite":
        connection = sqlite3.connect(str(database.sqlite_path))
        try:
            rows = connection.execute(QUERY).fetchall()
        finally:
            connection.close()
    else:
        with psycopg.connect(database.url) as pg:
            rows = pg.execute(QUERY).fetchall()
    requested: Counter[int] = Counter()
    outcomes: Counter[int] = Counter()
    for event_type, first, _ in rows:
        (requested if event_type == "CalculationRequested" else outcomes)[first] += 1
    ids = [str(r[2]) for r in rows]
    return StoredCalls(requested, outcomes, len(ids) == len(set(ids)))


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
