"""``oriserver db ...`` and ``oriserver events ...``: one-off admin processes (12-factor XII)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from oriserver.config import Settings
from oriserver.errors import StoreError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


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


def db_wait(
    settings: Settings, *, timeout_s: float, interval_s: float, reachable: bool = False
) -> int:
    """Wait until the schema is at the revision this version needs (or, with
    ``reachable``, until the database answers at all); never migrates.

    Exit 0 once it is, 1 when timeout_s passes first. One line per change of state, so
    an init container's log reads as a short story rather than a line per attempt."""
    from oriserver.store import migrate

    database = settings.events.database
    head = migrate.head_revision()
    goal = "the database to answer" if reachable else f"revision {head}"
    deadline = time.monotonic() + timeout_s
    last_state = ""
    while True:
        state, revision = _database_state(settings, head, reachable=reachable)
        if state is None:
            done = (
                f"answers (revision {revision or 'none'})"
                if reachable
                else f"is at revision {head}"
            )
            print(f"ready: {database.redacted()} {done}", flush=True)
            return EXIT_OK
        if state != last_state:
            print(f"waiting for {goal}: {state}", flush=True)
            last_state = state
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            print(
                f"oriserver: gave up after {timeout_s:g} s waiting for {goal}: {state}",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        time.sleep(min(interval_s, remaining))


def _database_state(
    settings: Settings, head: str, *, reachable: bool
) -> tuple[str | None, str | None]:
    """(None when the goal is met, else what stands in the way; the revision found).

    Reading the revision needs a connection and a query, so it also proves that the
    database answers; a SQLite file that does not exist yet counts as reachable (the
    first `oriserver db upgrade` creates it)."""
    from oriserver.store import migrate

    try:
        current = migrate.current_revision(settings.events.database) if _exists(settings) else None
    except StoreError as error:
        return str(error), None
    if reachable or current == head:
        return None, current
    return f"the database is at revision {current or 'none'}", current


def events_rebuild(settings: Settings, *, archives: Sequence[Path] = ()) -> int:
    from oriserver.service.retention import RetentionError, rebuild
    from oriserver.store.archive_file import archived_events
    from oriserver.store.factory import open_store

    missing = [str(path) for path in archives if not path.is_file()]
    if missing:
        print(f"oriserver: no such archive file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    store = open_store(settings.events.database, timeout_s=settings.events.db_timeout_s)
    try:
        store.ping()
        totals, position = rebuild(store, archived_events(archives) if archives else None)
    except RetentionError as error:
        print(f"oriserver: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as error:
        print(f"oriserver: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        store.close()
    print(f"rebuilt running totals from {position} log positions ({len(archives)} archives)")
    for method, counts in totals.by_method.items():
        print(
            f"{method.value:<10} requested={counts.requested} succeeded={counts.succeeded} failed={counts.failed}"
        )
    return EXIT_OK


def events_archive(settings: Settings, *, before: datetime, output: Path, batch: int) -> int:
    """Exit 2 when the output cannot be a new file; 1 on a database or disk failure."""
    from oriserver.service.retention import RetentionError, archive
    from oriserver.store.archive_file import ArchiveWriter
    from oriserver.store.factory import open_store

    if not output.parent.is_dir():
        print(f"oriserver: {output.parent} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    try:
        writer = ArchiveWriter(output)
    except OSError as error:  # FileExistsError included: archives are never overwritten
        print(f"oriserver: cannot write {output}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, FileExistsError) else EXIT_FAILURE
    store = open_store(settings.events.database, timeout_s=settings.events.db_timeout_s)
    started = time.monotonic()
    try:
        store.ping()
        done = archive(store, before, writer, remove_batch=batch)
    except (StoreError, RetentionError, OSError) as error:
        kept = output.exists()
        writer.abort()
        where = f"; {output} is complete and kept" if kept else "; nothing was removed"
        print(f"oriserver: archive failed: {error}{where}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        store.close()
    seconds = time.monotonic() - started
    print(
        f"archived {done.events} events (positions {done.from_position} to "
        f"{done.before_position - 1}) to {output} and removed them in {seconds:.1f} s "
        f"({done.events / max(seconds, 1e-9):,.0f} events/s); the log now begins at "
        f"{done.before_position}"
    )
    if done.held_by is not None:
        print(f"newer events were kept: checkpoint {done.held_by!r} has not passed them yet")
    return EXIT_OK


def _exists(settings: Settings) -> bool:
    path = settings.events.database.sqlite_path
    return path is None or path.exists()
