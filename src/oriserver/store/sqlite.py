"""The SQLite backend: the embedded default, one file, WAL mode, no server needed.

Writers serialise on SQLite's database lock (BEGIN IMMEDIATE), so positions
commit in order and a reader can never see position N+1 before N.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from oriserver.domain.events import Event, StoredEvent
from oriserver.domain.totals import RunningTotals, fold_counts
from oriserver.errors import SchemaNotReady, StoreError, StoreUnavailable
from oriserver.service.ports import (
    NO_FILTER,
    TOTALS_PROJECTION,
    Appended,
    Progress,
    ReadFilter,
    Row,
    Step,
)
from oriserver.store import sql_common
from oriserver.store.rows import COLUMNS, count_rows, from_row, to_row

_INSERT = (
    f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "  # noqa: S608
    "ON CONFLICT (event_id) DO NOTHING"
)
_EPOCH_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _adapt(row: Row) -> Row:
    """SQLite keeps UUIDs and times as text (the UUID's and ISO 8601's usual spelling)."""
    return (
        str(UUID(bytes=row[0])),
        str(UUID(bytes=row[1])),
        *row[2:13],
        (_EPOCH + row[13] * _MICROSECOND).isoformat(),
    )


class SqliteEventStore:
    """One connection per thread; WAL lets readers run while a batch is written."""

    def __init__(
        self,
        path: Path,
        *,
        schema_revision: str,
        synchronous_full: bool = False,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self._path = path
        self._schema_revision = schema_revision
        self._synchronous = "FULL" if synchronous_full else "NORMAL"
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            if not self._path.exists():
                raise SchemaNotReady(
                    f"no event database at {self._path}; run `oriserver db upgrade`"
                )
            try:
                # Each connection is used by one thread only; check_same_thread=False just lets
                # close() run from the thread that shuts the store down.
                connection = sqlite3.connect(
                    self._path,
                    timeout=self._busy_timeout_s,
                    isolation_level=None,
                    check_same_thread=False,
                )
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(f"PRAGMA synchronous={self._synchronous}")
            except sqlite3.Error as error:
                raise StoreUnavailable(f"cannot open {self._path}: {error}") from error
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                raise SchemaNotReady(
                    f"the event store schema is missing in {self._path}; run `oriserver db upgrade`"
                ) from error
            raise StoreUnavailable(f"SQLite at {self._path}: {error}") from error
        except sqlite3.Error as error:
            raise StoreError(f"SQLite at {self._path}: {error}") from error

    # -- the log -----------------------------------------------------------
    def append(self, events: Sequence[Event]) -> Appended:
        return self.append_rows([to_row(event) for event in events])

    def append_rows(self, rows: Sequence[Row], *, project: bool = False) -> Appended:
        """One write transaction; with ``project`` the totals follow in the same one when
        their checkpoint is the head before the batch and no row was a duplicate (a
        retried batch is left to the projection runner, which reads it back)."""
        adapted = [_adapt(row) for row in rows]
        with self._transaction(write=True) as connection:
            before = connection.total_changes
            head_before = self._head(connection)
            connection.executemany(_INSERT, adapted)
            stored = connection.total_changes - before
            head = self._head(connection) if stored else head_before
            projected = False
            if project and stored == len(rows) and stored:
                checkpoint = self._checkpoint(connection, TOTALS_PROJECTION) or 0
                if checkpoint == head_before:
                    totals = fold_counts(self._totals(connection), count_rows(rows))
                    self._store_totals(connection, totals, head)
                    projected = True
        return Appended(stored, head, projected)

    @staticmethod
    def _head(connection: sqlite3.Connection) -> int:
        (head,) = connection.execute(sql_common.HEAD).fetchone()
        return int(head)

    def first_position(self) -> int:
        with self._transaction(write=False) as connection:
            (first,) = connection.execute(sql_common.FIRST_POSITION).fetchone()
        return int(first)

    def remove_before(self, first: int, before: int, batch: int) -> int:
        """Batches of positions, each in its own write transaction, so appends wait for one
        batch at most. AUTOINCREMENT (see the first migration) keeps removed positions from
        being handed out again."""
        removed = 0
        for low, high in sql_common.removal_batches(first, before, batch):
            with self._transaction(write=True) as connection:
                (found,) = connection.execute(sql_common.FIRST_POSITION).fetchone()
                if found != low:
                    raise StoreError(sql_common.stale_start(found, low))
                if high > self._head(connection) + 1:
                    raise StoreError(f"cannot remove up to {high}: the head is below it")
                cursor = connection.execute(
                    "DELETE FROM events WHERE position >= ? AND position < ?", (low, high)
                )
                removed += cursor.rowcount
                connection.execute(
                    "INSERT INTO log_start (singleton, first_position) VALUES (1, ?) "
                    "ON CONFLICT (singleton) DO UPDATE SET first_position = excluded.first_position",
                    (high,),
                )
        return removed

    def read(
        self, from_position: int, limit: int, where: ReadFilter = NO_FILTER
    ) -> list[StoredEvent]:
        extra, params = sql_common.filter_sql(where, "?")
        sql = f"{sql_common.SELECT_EVENTS} WHERE position >= ?{extra} ORDER BY position LIMIT ?"
        with self._transaction(write=False) as connection:
            rows = connection.execute(sql, [from_position, *params, limit]).fetchall()
        return [from_row(row) for row in rows]

    def head(self) -> int:
        with self._transaction(write=False) as connection:
            return self._head(connection)

    # -- the running totals ------------------------------------------------
    def advance_totals(self, step: Step, limit: int) -> Progress:
        with self._transaction(write=True) as connection:
            checkpoint = self._checkpoint(connection, TOTALS_PROJECTION) or 0
            totals = self._totals(connection)
            sql = f"{sql_common.SELECT_EVENTS} WHERE position > ? ORDER BY position LIMIT ?"
            events = [from_row(r) for r in connection.execute(sql, (checkpoint, limit)).fetchall()]
            totals, progress = sql_common.apply_step(step, totals, checkpoint, events)
            if progress.applied:
                self._store_totals(connection, totals, progress.checkpoint)
        return progress

    def load_totals(self) -> tuple[RunningTotals, int]:
        with self._transaction(write=False) as connection:
            return self._totals(connection), self._checkpoint(connection, TOTALS_PROJECTION) or 0

    def replace_totals(self, totals: RunningTotals, checkpoint: int) -> None:
        with self._transaction(write=True) as connection:
            connection.execute("DELETE FROM running_totals")
            self._store_totals(connection, totals, checkpoint)

    def _totals(self, connection: sqlite3.Connection) -> RunningTotals:
        rows = connection.execute("SELECT method, requested, succeeded, failed FROM running_totals")
        return sql_common.totals_from_rows(rows.fetchall())

    def _store_totals(
        self, connection: sqlite3.Connection, totals: RunningTotals, checkpoint: int
    ) -> None:
        connection.executemany(
            "INSERT INTO running_totals (method, requested, succeeded, failed) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (method) DO UPDATE SET requested = excluded.requested, "
            "succeeded = excluded.succeeded, failed = excluded.failed",
            sql_common.totals_to_rows(totals),
        )
        self._save_checkpoint(connection, TOTALS_PROJECTION, checkpoint)

    # -- checkpoints and leases --------------------------------------------
    def load_checkpoint(self, name: str) -> int | None:
        with self._transaction(write=False) as connection:
            return self._checkpoint(connection, name)

    def save_checkpoint(self, name: str, position: int) -> None:
        with self._transaction(write=True) as connection:
            self._save_checkpoint(connection, name, position)

    def all_checkpoints(self) -> dict[str, int]:
        with self._transaction(write=False) as connection:
            rows = connection.execute(sql_common.ALL_CHECKPOINTS).fetchall()
        return {str(name): int(position) for name, position in rows}

    @staticmethod
    def _checkpoint(connection: sqlite3.Connection, name: str) -> int | None:
        row = connection.execute(
            "SELECT position FROM checkpoints WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _save_checkpoint(connection: sqlite3.Connection, name: str, position: int) -> None:
        connection.execute(
            "INSERT INTO checkpoints (name, position) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
            "SET position = excluded.position, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            (name, position),
        )

    def try_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        with self._transaction(write=True) as connection:
            row = connection.execute(
                f"INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, {_EPOCH_NOW} + ?) "  # noqa: S608
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
                f"WHERE leases.holder = excluded.holder OR leases.expires_at < {_EPOCH_NOW} RETURNING holder",
                (name, holder, ttl_s),
            ).fetchone()
        return row is not None

    def release_lease(self, name: str, holder: str) -> None:
        with self._transaction(write=True) as connection:
            connection.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def ping(self) -> None:
        with self._transaction(write=False) as connection:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        sql_common.check_revision(row[0] if row else None, self._schema_revision, str(self._path))

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                with contextlib.suppress(sqlite3.Error):
                    connection.close()
            self._all.clear()
        self._local = threading.local()
