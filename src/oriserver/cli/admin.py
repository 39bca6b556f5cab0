"""``oriserver db ...`` and ``oriserver events ...``: one-off admin processes (12-factor XII)."""

from __future__ import annotations

import sys

from oriserver.config import Settings
from oriserver.errors import StoreError

EXIT_OK, EXIT_FAILURE = 0, 1


def db_upgrade(settings: Settings) -> int:
    from oriserver.store import migrate

    database = settings.events.database
    try:
        before = migrate.current_revision(database) if _exists(settings) else None
        migrate.upgrade(database)
        after = migrate.current_revision(database)
    except StoreError as error:
        print(f"oriserver: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if before == after:
        print(f"{database.redacted()}: already at revision {after}")
    else:
        print(f"{database.redacted()}: upgraded from {before or 'an empty database'} to {after}")
    return EXIT_OK


def db_current(settings: Settings) -> int:
    from oriserver.store import migrate

    database = settings.events.database
    try:
        current = migrate.current_revision(database) if _exists(settings) else None
    except StoreError as error:
        print(f"oriserver: {error}", file=sys.stderr)
        return EXIT_FAILURE
    head = migrate.head_revision()
    state = "up to date" if current == head else "needs `oriserver db upgrade`"
    print(
        f"{database.redacted()}: revision {current or 'none'} (this version needs {head}; {state})"
    )
    return EXIT_OK if current == head else EXIT_FAILURE


def events_rebuild(settings: Settings) -> int:
    from oriserver.service.projection import rebuild
    from oriserver.store.factory import open_store

    store = open_store(settings.events.database, timeout_s=settings.events.db_timeout_s)
    try:
        store.ping()
        totals, position = rebuild(store)
    except StoreError as error:
        print(f"oriserver: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        store.close()
    print(f"rebuilt running totals from {position} log positions")
    for method, counts in totals.by_method.items():
        print(
            f"{method.value:<10} requested={counts.requested} succeeded={counts.succeeded} failed={counts.failed}"
        )
    return EXIT_OK


def _exists(settings: Settings) -> bool:
    path = settings.events.database.sqlite_path
    return path is None or path.exists()
