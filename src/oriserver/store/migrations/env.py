"""Alembic's entry point: runs the migrations on the connection oriserver provides.

On PostgreSQL an advisory lock serialises concurrent upgrades, so replicas that
auto-migrate at the same moment (or a Job racing a developer) cannot collide.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

MIGRATION_LOCK_KEY = 0x6F72690001  # "ori" + 1: an arbitrary, project-unique advisory lock id


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    assert isinstance(engine, Engine), "run through oriserver.store.migrate, which makes the engine"
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run oriserver db upgrade")
run_migrations_online()
