"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from harness import postgres
from oriserver.config import Settings, load_settings
from oriserver.config.database import DatabaseUrl
from oriserver.store import migrate
from tests.support.servers import ServerThread, running_server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Defaults as a user gets them, with the SQLite file in the test's own folder."""
    return load_settings(
        {
            "ORI_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
            "ORI_INSTANCE_ID": "test-instance",
            "ORI_PORT": "0",
            "ORI_LISTEN_HOST": "127.0.0.1",
            "ORI_METRICS_PORT": "0",
        }
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[ServerThread]:
    """A real server on a free loopback port, stopped after the test."""
    with running_server(settings) as running:
        yield running


@pytest.fixture
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as chan:
        yield chan


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL server: ORI_TEST_DATABASE_URL, else a throwaway one. Never skipped."""
    with postgres.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_database(postgres_server_url: str) -> Iterator[DatabaseUrl]:
    """One migrated database for the session; tests that share it truncate first."""
    with postgres.fresh_database(postgres_server_url) as url:
        database = DatabaseUrl.parse(url)
        migrate.upgrade(database)
        yield database


@pytest.fixture
def clean_postgres(postgres_database: DatabaseUrl) -> DatabaseUrl:
    """The session database with every table emptied."""
    postgres.truncate(postgres_database.url)
    return postgres_database


@pytest.fixture
def sqlite_database(tmp_path: Path) -> DatabaseUrl:
    database = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'events.db'}")
    migrate.upgrade(database)
    return database
