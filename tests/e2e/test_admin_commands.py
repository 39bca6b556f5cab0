"""One-off admin processes: schema migrations and replay, as operators run them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from harness import postgres
from harness.servers import server_env
from oriserver.config.database import DatabaseUrl
from oriserver.domain.events import Method
from oriserver.service.projection import fold_stored
from oriserver.store import migrate
from oriserver.store.factory import open_store
from tests.support.events import many


def oriserver(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oriserver", *args],
        env=server_env(env), cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_db_upgrade_creates_the_sqlite_schema_and_is_repeatable(tmp_path: Path) -> None:
    env = {"ORI_DATABASE_URL": "sqlite:///data/events.db"}
    first = oriserver("db", "upgrade", env=env, cwd=tmp_path)
    second = oriserver("db", "upgrade", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"upgraded from an empty database to {migrate.head_revision()}" in first.stdout
    assert second.returncode == 0
    assert f"already at revision {migrate.head_revision()}" in second.stdout
    tables = {
        r[0]
        for r in sqlite3.connect(tmp_path / "data" / "events.db").execute(
            "SELECT name FROM sqlite_master"
        )
    }
    assert {
        "events",
        "running_totals",
        "checkpoints",
        "leases",
        "log_start",
        "alembic_version",
    } <= tables


def test_db_current_tells_whether_an_upgrade_is_needed(tmp_path: Path) -> None:
    env = {"ORI_DATABASE_URL": "sqlite:///events.db"}
    before = oriserver("db", "current", env=env, cwd=tmp_path)
    assert before.returncode == 1
    assert "needs `oriserver db upgrade`" in before.stdout
    oriserver("db", "upgrade", env=env, cwd=tmp_path)
    after = oriserver("db", "current", env=env, cwd=tmp_path)
    assert after.returncode == 0
    assert "up to date" in after.stdout


@pytest.mark.postgres
def test_db_upgrade_on_postgres_from_several_processes_at_once(
    postgres_server_url: str, tmp_path: Path
) -> None:
    with postgres.fresh_database(postgres_server_url) as url:
        env = {"ORI_DATABASE_URL": url}
        runs = [
            subprocess.Popen([sys.executable, "-m", "oriserver", "db", "upgrade"], env=server_env(env),
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(3)
        ]  # fmt: skip
        results = [(run.wait(120), run.communicate()) for run in runs]
        assert [code for code, _ in results] == [0, 0, 0], results
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
                (migrate.head_revision(),)
            ]


def test_db_upgrade_reports_an_unreachable_database_without_a_traceback(tmp_path: Path) -> None:
    env = {"ORI_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = oriserver("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot reach the database at postgresql://nobody@127.0.0.1:1/none" in result.stderr
    assert "Traceback" not in result.stderr


def test_events_rebuild_replays_the_log_into_the_totals(
    sqlite_database: DatabaseUrl, tmp_path: Path
) -> None:
    store = open_store(sqlite_database)
    events = many(6) + many(3, Method.FACTORIAL)
    store.append(events)
    store.advance_totals(fold_stored, 4)  # a projection that is behind, as after a bug fix
    store.close()
    result = oriserver(
        "events", "rebuild", env={"ORI_DATABASE_URL": sqlite_database.url}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "rebuilt running totals from 18 log positions" in result.stdout
    store = open_store(sqlite_database)
    totals, checkpoint = store.load_totals()
    store.close()
    assert checkpoint == 18
    assert (totals.of(Method.SUMMATION).requested, totals.of(Method.FACTORIAL).failed) == (6, 1)


def test_a_server_refuses_to_start_on_an_unmigrated_postgres_only_if_asked_to_migrate(
    tmp_path: Path,
) -> None:
    env = {
        "ORI_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "ORI_DB_AUTO_MIGRATE": "true",
    }
    result = oriserver("serve", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot start" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
