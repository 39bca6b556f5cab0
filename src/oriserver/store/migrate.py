"""Schema migrations through Alembic: upgrade to head, and report where a database stands."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from oriserver.config.database import DatabaseUrl
from oriserver.errors import StoreError, StoreUnavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database: DatabaseUrl) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates %, which may appear in an escaped password.
    config.set_main_option("sqlalchemy.url", database.sqlalchemy_url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(
        alembic_config(DatabaseUrl.parse("sqlite:///x"))
    ).get_current_head()
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
    try:
        command.upgrade(alembic_config(database), "head")
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise _translated(database, error) from error


def current_revision(database: DatabaseUrl) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = sqlalchemy.create_engine(database.sqlalchemy_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise _translated(database, error) from error
    finally:
        engine.dispose()
