"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oriserver.config import Settings, load_settings
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
