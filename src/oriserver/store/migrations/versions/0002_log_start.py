"""Where the retained log begins, once older events have been archived and removed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

One row at most: ``first_position`` is the lowest position that may still be in
``events``; every position below it was removed by ``oriserver events archive``. No
row means nothing was ever removed (the log begins at 1). It also keeps the head
right when every event has been removed: max(position) alone would fall back to 0.
Adding a table touches no existing row, so this runs on a table that holds data.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_start",
        sa.Column("singleton", sa.Boolean(), primary_key=True, server_default=sa.true()),
        sa.Column("first_position", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("singleton", name="ck_log_start_singleton"),
        sa.CheckConstraint("first_position >= 1", name="ck_log_start_first_position"),
    )


def downgrade() -> None:
    op.drop_table("log_start")
