"""Create the event log, the running-totals projection, checkpoints and leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Native types on PostgreSQL, portable ones on SQLite.
POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UUID = sa.String(36).with_variant(postgresql.UUID(as_uuid=True), "postgresql")
INET = sa.String(45).with_variant(postgresql.INET(), "postgresql")
TIMESTAMP = sa.String(40).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
NOW = sa.text("now()")
SQLITE_NOW = sa.text("(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))")


def _now() -> sa.TextClause:
    return SQLITE_NOW if op.get_context().dialect.name == "sqlite" else NOW


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", POSITION, sa.Identity(always=True), primary_key=True),
        sa.Column("event_id", UUID, nullable=False),
        sa.Column("calculation_id", UUID, nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("input_first", sa.BigInteger()),
        sa.Column("input_last", sa.BigInteger()),
        sa.Column("input_base", sa.BigInteger()),
        sa.Column("result", sa.BigInteger()),
        sa.Column("status_code", sa.Text()),
        sa.Column("error_message", sa.Text()),
        sa.Column("client_ip", INET),
        sa.Column("instance_id", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.Text()),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False, server_default=_now()),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sa.CheckConstraint(
            "event_type IN ('CalculationRequested', 'CalculationSucceeded', 'CalculationFailed')",
            name="ck_events_event_type",
        ),
        sa.CheckConstraint("method IN ('Summation', 'Factorial')", name="ck_events_method"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "running_totals",
        sa.Column("method", sa.Text(), primary_key=True),
        sa.Column("requested", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("succeeded", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False, server_default=_now()),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("holder", sa.Text(), nullable=False),
        # Seconds since the epoch by the database's clock, so replicas' clocks never disagree.
        sa.Column("expires_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    for table in ("leases", "checkpoints", "running_totals", "events"):
        op.drop_table(table)
