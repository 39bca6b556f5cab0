"""The SQL statements of the PostgreSQL backend (store/postgres.py), in one place."""

from __future__ import annotations

from oriserver.store.rows import COLUMNS

APPEND_LOCK_KEY = 0x6F72690002  # "ori" + 2: serialises appends (see store/postgres.py)
COLUMN_LIST = ", ".join(COLUMNS)
COPY_EVENTS = f"COPY events ({COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS events_staging (LIKE events) ON COMMIT DELETE ROWS; "
    "ALTER TABLE events_staging DROP COLUMN IF EXISTS position, DROP COLUMN IF EXISTS created_at, "
    "ADD COLUMN IF NOT EXISTS ord bigserial"
)
COPY_STAGING = f"COPY events_staging ({COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
MERGE_STAGING = (
    f"INSERT INTO events ({COLUMN_LIST}) SELECT {COLUMN_LIST} FROM events_staging "  # noqa: S608
    "ORDER BY ord ON CONFLICT (event_id) DO NOTHING RETURNING event_type, method"
)

# The identity value of the last row this transaction inserted: the new head, since
# appends hold the append lock (no other writer can insert meanwhile).
CURRENT_HEAD = "currval(pg_get_serial_sequence('events', 'position'))"
LAST_POSITION = f"SELECT {CURRENT_HEAD}"
EPOCH_NOW = "extract(epoch from clock_timestamp())"
# Creates the row on first use and locks it either way: concurrent removals take turns.
LOCK_START = (
    "INSERT INTO log_start (singleton, first_position) VALUES (true, 1) ON CONFLICT (singleton) "
    "DO UPDATE SET first_position = log_start.first_position RETURNING first_position"
)
APPEND_LOCK = "SELECT pg_advisory_xact_lock(%s)"
# Creates the checkpoint row on first use and locks it either way, in one statement.
LOCK_CHECKPOINT = (
    "INSERT INTO checkpoints (name, position) VALUES (%s, 0) ON CONFLICT (name) "
    "DO UPDATE SET position = checkpoints.position RETURNING position"
)
SAVE_CHECKPOINT = (
    "INSERT INTO checkpoints (name, position) VALUES (%s, {position}) ON CONFLICT (name) "
    "DO UPDATE SET position = excluded.position, updated_at = now()"
)
SELECT_TOTALS = "SELECT method, requested, succeeded, failed FROM running_totals"
STORE_TOTALS = (
    "INSERT INTO running_totals (method, requested, succeeded, failed) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (method) DO UPDATE SET requested = excluded.requested, "
    "succeeded = excluded.succeeded, failed = excluded.failed"
)
