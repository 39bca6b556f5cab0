"""Reads the events table directly with SQL, as an operator would, to check what was stored."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass

import psycopg

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
