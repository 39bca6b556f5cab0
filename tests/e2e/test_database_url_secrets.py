"""Database passwords stay out of logs and command output; bad URLs and hosts stop start-up.

Every check runs the real ``oriserver`` process, as an operator would.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from harness import postgres
from harness.servers import server_env, start_server
from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

SECRET = "secret"  # noqa: S105 - the test password that must never be shown
LEAKY_URL = f"postgresql://u@127.0.0.1:5432/db?password={SECRET}"


def oriserver(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # A short timeout: a URL that should have been refused would otherwise serve forever.
    return subprocess.run(
        [sys.executable, "-m", "oriserver", *args],
        env=server_env(env), cwd=cwd, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def with_password(url: str) -> str:
    """The same database with a password parameter (the test servers trust local users)."""
    return f"{url}{'&' if '?' in url else '?'}password={SECRET}"


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_log_line_of_a_server_shows_the_database_password(
    tmp_path: Path, log_format: str
) -> None:
    server = start_server(
        tmp_path,
        {
            "ORI_DATABASE_URL": LEAKY_URL,
            "ORI_LOG_FORMAT": log_format,
            "ORI_EVENTS_SHUTDOWN_FLUSH_SECONDS": "1",
            "ORI_DB_TIMEOUT_SECONDS": "1",
        },
    )
    with grpc.insecure_channel(server.target) as channel:  # an event the store cannot take
        pb_grpc.MathHelperStub(channel).Factorial(pb.FactorialInput(base=3), timeout=5)
    server.signal(signal.SIGTERM)
    server.wait()
    logs = server.logs()
    assert "event store ready" in logs
    assert "127.0.0.1" in next(line for line in logs.splitlines() if "event store ready" in line)
    assert [line for line in logs.splitlines() if SECRET in line] == []


@pytest.mark.postgres
def test_db_commands_never_print_the_password(postgres_server_url: str, tmp_path: Path) -> None:
    with postgres.fresh_database(postgres_server_url) as url:
        env = {"ORI_DATABASE_URL": with_password(url)}
        upgrade = oriserver("db", "upgrade", env=env, cwd=tmp_path)
        current = oriserver("db", "current", env=env, cwd=tmp_path)
    name = url.rsplit("/", 1)[1].split("?")[0]
    assert upgrade.returncode == 0, upgrade.stderr
    assert current.returncode == 0, current.stderr
    for result in (upgrade, current):
        assert name in result.stdout  # the line names the database ...
        assert SECRET not in result.stdout + result.stderr  # ... but not its password


@pytest.mark.parametrize(
    "url", [LEAKY_URL, f"postgresql://u:{SECRET}@127.0.0.1:1/none"], ids=["parameter", "userinfo"]
)
def test_a_failing_db_upgrade_does_not_print_the_password(url: str, tmp_path: Path) -> None:
    for command in ("upgrade", "current"):
        result = oriserver("db", command, env={"ORI_DATABASE_URL": url}, cwd=tmp_path)
        assert result.returncode == 1
        assert "cannot reach the database at" in result.stderr
        assert SECRET not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@127.0.0.1:notaport/x",
        "postgresql://u@127.0.0.1:5432/db?sslmode=bogus",
        "postgresql://",
        f"postgresql://u:{SECRET}@127.0.0.1:5432/db?sslmode=bogus",
    ],
)
@pytest.mark.parametrize("command", [(), ("db", "upgrade")], ids=["serve", "db-upgrade"])
def test_a_bad_database_url_exits_2_with_one_line(
    url: str, command: tuple[str, ...], tmp_path: Path
) -> None:
    result = oriserver(*command, env={"ORI_DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ORI_DATABASE_URL" in lines[0]
    assert SECRET not in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["ORI_LISTEN_HOST", "ORI_METRICS_LISTEN_HOST"])
def test_a_bad_listen_host_exits_2_before_any_migration(name: str, tmp_path: Path) -> None:
    env = {"ORI_DATABASE_URL": "sqlite:///events.db", name: "256.1.1.1"}
    result = oriserver(env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "events.db").exists()  # no work was done before the check
