"""Schema migrations through Alembic: upgrade to head, and report where a database stands."""

from __future__ import annotations

from pathlib import Path

import psycopg
import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from oriserver.config.database import DatabaseUrl
from oriserver.errors import StoreError, StoreUnavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def engine_for(database: DatabaseUrl) -> sqlalchemy.Engine:
    """An engine that opens one connection per use. For PostgreSQL libpq reads the URL
    itself: SQLAlchemy's own parser reads several forms differently (a list of hosts
    fails with a traceback) and quotes the URL, password included, in its errors."""
    if database.dialect == "postgresql":
        return sqlalchemy.create_engine(
            "postgresql+psycopg://",
            creator=lambda: psycopg.connect(database.url),
            poolclass=sqlalchemy.pool.NullPool,
        )
    return sqlalchemy.create_engine(database.url, poolclass=sqlalchemy.pool.NullPool)


def alembic_config(engine: sqlalchemy.Engine | None = None) -> Config:
    """The migrations, run by migrations/env.py on ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _translated(database: DatabaseUrl, error: Exception) -> StoreError:
    if isinstance(error, sqlalchemy.exc.OperationalError):
        return StoreUnavailable(
            f"cannot reach the database at {database.redacted()}: {_first_line(error)}"
        )
    return StoreError(f"migration failed on {database.redacted()}: {_first_line(error)}")


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def upgrade(database: DatabaseUrl) -> None:
    """Apply every pending migration (a no-op when already at head)."""
    if database.sqlite_path is not None and database.sqlite_path.parent != Path():
        database.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    engine = engine_for(database)
    try:
        command.upgrade(alembic_config(engine), "head")
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise _translated(database, error) from error
    finally:
        engine.dispose()


def current_revision(database: DatabaseUrl) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = engine_for(database)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise _translated(database, error) from error
    finally:
        engine.dispose()
