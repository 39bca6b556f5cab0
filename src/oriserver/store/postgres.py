"""The PostgreSQL backend, for production: psycopg 3 with a small connection pool.

Gap safety. Identity values are handed out when rows are inserted, not when
transactions commit, so with several writers a reader could see position 12
committed while 11 is still in flight, move its checkpoint past 11, and never
see it. Every append therefore takes a transaction-scoped advisory lock
first: batches are numbered and committed one at a time, so a snapshot that
contains position N contains every position below it. Batching keeps the
cost low: the lock is taken once per batch, not once per event. (The same
choice as eventsourcing's PostgreSQL recorder; the alternatives, xid
watermarks or gap timeouts, move the complexity to every reader.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg_pool

from oriserver.domain.events import Event, Method, StoredEvent
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
from oriserver.store import pgcopy, sql_common
from oriserver.store import postgres_sql as pg_sql
from oriserver.store.rows import count_rows, count_types, from_row, to_row
from oriserver.store.stall_guard import StallGuard


@dataclass(frozen=True, slots=True)
class _AppendStart:
    """What an append learns under the append lock: the head, and, when it projects, the
    totals' checkpoint (locked) and the totals."""

    head: int
    checkpoint: int | None = None
    totals: RunningTotals | None = None


def _int(cursor: psycopg.Cursor[Any]) -> int:
    row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class PostgresEventStore:
    """Each call borrows a pooled connection and runs in its own transaction."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema_revision: str,
        timeout_s: float = 5.0,
        max_connections: int = 4,
    ) -> None:
        self._schema_revision = schema_revision
        self._timeout_s = timeout_s
        self._pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_connections,
            open=False,
            timeout=timeout_s,
            # The pool retries a lost connection with a doubling delay until reconnect_timeout
            # (300 s by default), so after a long outage it could wait tens of seconds more
            # before noticing the database is back. A short give-up bounds the delay: the
            # next request starts a fresh attempt, and the writer's own backoff paces those.
            reconnect_timeout=timeout_s,
            configure=pgcopy.prepare,
            kwargs={
                "connect_timeout": max(2, int(timeout_s)),
                # A blackholed connection fails after this long instead of the kernel's minutes.
                "tcp_user_timeout": int(timeout_s * 1000),
                "keepalives_idle": max(1, int(timeout_s)),
                "application_name": "oriserver",
            },
            name="oriserver",
        )
        self._opened = False
        self._guard = StallGuard(timeout_s)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._opened:
            self._pool.open(wait=False)
            self._opened = True
        token = -1
        try:
            with (
                self._pool.connection() as connection,
                self._guard.watching(connection) as token,
                connection.transaction(),
            ):
                yield connection
        except psycopg_pool.PoolTimeout as error:
            raise StoreUnavailable(f"PostgreSQL unreachable: {_first_line(error)}") from error
        except psycopg.errors.UndefinedTable as error:
            raise SchemaNotReady(
                f"the event store schema is missing: {_first_line(error)}; run `oriserver db upgrade`"
            ) from error
        except psycopg.OperationalError as error:
            if self._guard.severed(token):
                raise StoreUnavailable(
                    f"PostgreSQL did not answer within {self._timeout_s:g}s; the connection was dropped"
                ) from error
            raise StoreUnavailable(f"PostgreSQL unavailable: {_first_line(error)}") from error
        except psycopg.Error as error:
            raise StoreError(f"PostgreSQL error: {_first_line(error)}") from error

    # -- the log -----------------------------------------------------------
    def append(self, events: Sequence[Event]) -> Appended:
        return self.append_rows([to_row(event) for event in events])

    def append_rows(self, rows: Sequence[Row], *, project: bool = False) -> Appended:
        """Binary COPY of the batch straight into events; if any event_id is already there
        (a retry after a commit whose outcome was unknown), redo it through a staging table
        with ON CONFLICT DO NOTHING. The fast path is safe because a duplicate aborts it
        whole. With ``project`` the totals are advanced in the same transaction when their
        checkpoint is the head before the batch (see EventLog.append_rows)."""
        if not rows:
            return Appended(0, self.head())
        try:
            with self._transaction() as connection:
                start = self._lock_appends(connection, project)
                with connection.cursor() as cursor:
                    pgcopy.copy_rows(cursor, pg_sql.COPY_EVENTS, rows)
                head, projected = self._finish(connection, start, count_rows(rows))
                return Appended(len(rows), head, projected)
        except StoreError as error:
            if not isinstance(error.__cause__, psycopg.errors.UniqueViolation):
                raise
        with self._transaction() as connection:
            start = self._lock_appends(connection, project)
            connection.execute(pg_sql.STAGING)
            with connection.cursor() as cursor:
                pgcopy.copy_rows(cursor, pg_sql.COPY_STAGING, rows)
                stored = cursor.execute(pg_sql.MERGE_STAGING).fetchall()
            if not stored:
                return Appended(0, start.head)
            head, projected = self._finish(connection, start, count_types(stored))
            return Appended(len(stored), head, projected)

    @staticmethod
    def _lock_appends(connection: psycopg.Connection[Any], project: bool) -> _AppendStart:
        """Take the append lock (see the module docstring) and read the head under it; to
        project, also lock the totals' checkpoint and read the totals. One round trip: the
        statements go as a pipeline, and each still runs after the one before, with its own
        snapshot, so the head is read after the lock is held."""
        with connection.pipeline():
            connection.execute(pg_sql.APPEND_LOCK, (pg_sql.APPEND_LOCK_KEY,))
            head = connection.execute(sql_common.HEAD)
            if project:
                checkpoint = connection.execute(pg_sql.LOCK_CHECKPOINT, (TOTALS_PROJECTION,))
                totals = connection.execute(pg_sql.SELECT_TOTALS)
        if not project:
            return _AppendStart(_int(head))
        rows = totals.fetchall()
        return _AppendStart(_int(head), _int(checkpoint), sql_common.totals_from_rows(rows))

    def _finish(
        self,
        connection: psycopg.Connection[Any],
        start: _AppendStart,
        counts: Mapping[tuple[type[Event], Method], int],
    ) -> tuple[int, bool]:
        """The new head, and whether the counts of what this transaction stored were folded
        into the totals: only if they stood at the head before it (otherwise the projection
        is behind and its runner catches up). One round trip: the checkpoint is saved at
        the head by the database itself."""
        totals = start.totals if start.checkpoint == start.head else None
        with connection.pipeline():
            head = connection.execute(pg_sql.LAST_POSITION)
            if totals is not None:
                self._store_totals(connection, fold_counts(totals, counts), None)
        return _int(head), totals is not None

    def read(
        self, from_position: int, limit: int, where: ReadFilter = NO_FILTER
    ) -> list[StoredEvent]:
        extra, params = sql_common.filter_sql(where, "%s")
        sql = (
            f"{sql_common.PG_SELECT_EVENTS} WHERE position >= %s{extra} ORDER BY position LIMIT %s"
        )
        with self._transaction() as connection:
            rows = connection.execute(sql, [from_position, *params, limit]).fetchall()
        return [from_row(row) for row in rows]

    def head(self) -> int:
        with self._transaction() as connection:
            return self._scalar(connection, sql_common.HEAD)

    def first_position(self) -> int:
        with self._transaction() as connection:
            return self._scalar(connection, sql_common.FIRST_POSITION)

    def remove_before(self, first: int, before: int, batch: int) -> int:
        """A DELETE by position range per batch, each in its own transaction, which takes
        neither the append lock nor any row an append touches: appends only insert above
        the head, and this removes only below it. Removers take turns on the log_start row."""
        removed = 0
        for low, high in sql_common.removal_batches(first, before, batch):
            with self._transaction() as connection:
                found = self._scalar(connection, pg_sql.LOCK_START)
                if found != low:
                    raise StoreError(sql_common.stale_start(found, low))
                if high > (head := self._scalar(connection, sql_common.HEAD)) + 1:
                    raise StoreError(f"cannot remove up to {high}: the head is {head}")
                cursor = connection.execute(
                    "DELETE FROM events WHERE position >= %s AND position < %s", (low, high)
                )
                removed += cursor.rowcount
                connection.execute("UPDATE log_start SET first_position = %s", (high,))
        return removed

    @staticmethod
    def _scalar(connection: psycopg.Connection[Any], sql: str) -> int:
        row = connection.execute(sql).fetchone()
        assert row is not None
        return int(row[0])

    # -- the running totals ------------------------------------------------
    def advance_totals(self, step: Step, limit: int) -> Progress:
        with self._transaction() as connection:
            checkpoint = self._lock_checkpoint(connection, TOTALS_PROJECTION)
            totals = self._totals(connection)
            sql = f"{sql_common.PG_SELECT_EVENTS} WHERE position > %s ORDER BY position LIMIT %s"
            rows = connection.execute(sql, (checkpoint, limit)).fetchall()
            events = [from_row(row) for row in rows]
            totals, progress = sql_common.apply_step(step, totals, checkpoint, events)
            if progress.applied:
                self._store_totals(connection, totals, progress.checkpoint)
        return progress

    def load_totals(self) -> tuple[RunningTotals, int]:
        with self._transaction() as connection:
            return self._totals(connection), self._checkpoint(connection, TOTALS_PROJECTION) or 0

    def replace_totals(self, totals: RunningTotals, checkpoint: int) -> None:
        with self._transaction() as connection:
            self._lock_checkpoint(connection, TOTALS_PROJECTION)
            connection.execute("DELETE FROM running_totals")
            self._store_totals(connection, totals, checkpoint)

    @staticmethod
    def _totals(connection: psycopg.Connection[Any]) -> RunningTotals:
        return sql_common.totals_from_rows(connection.execute(pg_sql.SELECT_TOTALS).fetchall())

    def _store_totals(
        self, connection: psycopg.Connection[Any], totals: RunningTotals, checkpoint: int | None
    ) -> None:
        """Write the totals and their checkpoint; None: the head this transaction appended."""
        with connection.cursor() as cursor:
            cursor.executemany(
                pg_sql.STORE_TOTALS,
                sql_common.totals_to_rows(totals),
            )
        self._save_checkpoint(connection, TOTALS_PROJECTION, checkpoint)

    # -- checkpoints and leases --------------------------------------------
    @staticmethod
    def _lock_checkpoint(connection: psycopg.Connection[Any], name: str) -> int:
        """Create the row if needed and lock it, so concurrent runners take turns."""
        return _int(connection.execute(pg_sql.LOCK_CHECKPOINT, (name,)))

    @staticmethod
    def _checkpoint(connection: psycopg.Connection[Any], name: str) -> int | None:
        row = connection.execute(
            "SELECT position FROM checkpoints WHERE name = %s", (name,)
        ).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _save_checkpoint(
        connection: psycopg.Connection[Any], name: str, position: int | None
    ) -> None:
        """None: at the head this transaction appended."""
        if position is None:
            connection.execute(pg_sql.SAVE_CHECKPOINT.format(position=pg_sql.CURRENT_HEAD), (name,))
        else:
            connection.execute(pg_sql.SAVE_CHECKPOINT.format(position="%s"), (name, position))

    def load_checkpoint(self, name: str) -> int | None:
        with self._transaction() as connection:
            return self._checkpoint(connection, name)

    def all_checkpoints(self) -> dict[str, int]:
        with self._transaction() as connection:
            rows = connection.execute(sql_common.ALL_CHECKPOINTS).fetchall()
        return {str(name): int(position) for name, position in rows}

    def save_checkpoint(self, name: str, position: int) -> None:
        with self._transaction() as connection:
            self._save_checkpoint(connection, name, position)

    def try_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        with self._transaction() as connection:
            row = connection.execute(
                f"INSERT INTO leases (name, holder, expires_at) VALUES (%s, %s, {pg_sql.EPOCH_NOW} + %s) "  # noqa: S608
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
                f"WHERE leases.holder = excluded.holder OR leases.expires_at < {pg_sql.EPOCH_NOW} RETURNING holder",
                (name, holder, ttl_s),
            ).fetchone()
        return row is not None

    def release_lease(self, name: str, holder: str) -> None:
        with self._transaction() as connection:
            connection.execute("DELETE FROM leases WHERE name = %s AND holder = %s", (name, holder))

    def ping(self) -> None:
        with self._transaction() as connection:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        sql_common.check_revision(row[0] if row else None, self._schema_revision, "PostgreSQL")

    def close(self) -> None:
        self._guard.close()
        if self._opened:
            self._pool.close()
            self._opened = False
