"""Opens the backend an ORI_DATABASE_URL names."""

from __future__ import annotations

from oriserver.config.database import DatabaseUrl
from oriserver.store.base import EventStore
from oriserver.store.migrate import head_revision
from oriserver.store.postgres import PostgresEventStore
from oriserver.store.sqlite import SqliteEventStore


def open_store(
    database: DatabaseUrl, *, synchronous_full: bool = False, timeout_s: float = 5.0
) -> EventStore:
    """A store for the URL; nothing connects until the first call."""
    if database.dialect == "sqlite":
        assert database.sqlite_path is not None
        return SqliteEventStore(
            database.sqlite_path, schema_revision=head_revision(), synchronous_full=synchronous_full
        )
    return PostgresEventStore(database.url, schema_revision=head_revision(), timeout_s=timeout_s)
