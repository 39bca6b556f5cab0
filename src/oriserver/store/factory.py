"""Opens the backend an ORI_DATABASE_URL names."""

from __future__ import annotations

from oriserver.config.database import DatabaseUrl
from oriserver.service.ports import EventStore
from oriserver.store.postgres import PostgresEventStore
from oriserver.store.sqlite import SqliteEventStore


def open_store(
    database: DatabaseUrl,
    *,
    synchronous_full: bool = False,
    timeout_s: float = 5.0,
    schema_revision: str | None = None,
) -> EventStore:
    """A store for the URL; nothing connects until the first call.

    schema_revision is the Alembic revision the store expects; it is looked up when not
    given, which loads Alembic (the event host passes it in, to start quicker)."""
    if schema_revision is None:
        from oriserver.store.migrate import head_revision

        schema_revision = head_revision()
    if database.dialect == "sqlite":
        assert database.sqlite_path is not None
        return SqliteEventStore(
            database.sqlite_path, schema_revision=schema_revision, synchronous_full=synchronous_full
        )
    return PostgresEventStore(database.url, schema_revision=schema_revision, timeout_s=timeout_s)
