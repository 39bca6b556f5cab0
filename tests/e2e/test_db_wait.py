"""``oriserver db wait``, the init step of a server pod: real processes on real databases."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harness import postgres
from harness.servers import server_env
from oriserver.store import migrate

HEAD = migrate.head_revision()
BEHIND = f"waiting for revision {HEAD}: the database is at revision none"


def oriserver(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oriserver", *args],
        env=server_env(env), cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def start_waiting(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "oriserver", "db", "wait", "--timeout=60", "--interval=0.2"],
        env=server_env(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def next_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().rstrip("\n")


def still_waiting_after(process: subprocess.Popen[str], seconds: float) -> bool:
    time.sleep(seconds)
    return process.poll() is None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend, with no schema yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    server_url = request.getfixturevalue("postgres_server_url")
    with postgres.fresh_database(server_url) as url:
        yield url


def test_it_waits_while_the_schema_is_behind_and_returns_once_db_upgrade_ran(
    unmigrated_url: str, tmp_path: Path
) -> None:
    env = {"ORI_DATABASE_URL": unmigrated_url}
    waiting = start_waiting(env, tmp_path)
    try:
        assert next_line(waiting) == BEHIND
        assert still_waiting_after(waiting, 1.5), "it returned before the schema was current"
        upgraded = oriserver("db", "upgrade", env=env, cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
        waiting.wait()
    assert waiting.returncode == 0, err
    assert out.splitlines() == [f"ready: {unmigrated_url} is at revision {HEAD}"]
    assert err == ""


@pytest.mark.postgres
def test_it_prints_one_line_per_change_of_state_from_no_database_to_ready(
    postgres_server_url: str, tmp_path: Path
) -> None:
    name = f"ori_wait_{time.monotonic_ns()}"
    url = postgres.with_database(postgres_server_url, name)
    waiting = start_waiting({"ORI_DATABASE_URL": url}, tmp_path)
    try:
        unreachable = next_line(waiting)
        assert unreachable.startswith(f"waiting for revision {HEAD}: cannot reach the database")
        assert f'database "{name}" does not exist' in unreachable
        assert still_waiting_after(waiting, 1.0), "several attempts, still one line"
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        assert next_line(waiting) == BEHIND
        assert still_waiting_after(waiting, 1.0)
        upgraded = oriserver("db", "upgrade", env={"ORI_DATABASE_URL": url}, cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        out, err = waiting.communicate(timeout=30)
        assert (waiting.returncode, out, err) == (0, f"ready: {url} is at revision {HEAD}\n", "")
    finally:
        waiting.kill()
        waiting.wait()
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_it_returns_at_once_on_a_current_schema(unmigrated_url: str, tmp_path: Path) -> None:
    env = {"ORI_DATABASE_URL": unmigrated_url}
    assert oriserver("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    result = oriserver("db", "wait", "--timeout=5", env=env, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"ready: {unmigrated_url} is at revision {HEAD}\n"


def test_it_times_out_with_exit_1_and_one_line_and_never_migrates(
    unmigrated_url: str, tmp_path: Path
) -> None:
    env = {"ORI_DATABASE_URL": unmigrated_url}
    started = time.monotonic()
    result = oriserver("db", "wait", "--timeout=1.5", "--interval=0.2", env=env, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"oriserver: gave up after 1.5 s waiting for revision {HEAD}: "
        "the database is at revision none\n"
    )
    assert result.stdout.count("\n") == 1, "the state never changed"
    assert 1.5 <= elapsed < 15
    current = oriserver("db", "current", env=env, cwd=tmp_path)
    assert "revision none" in current.stdout, "db wait must not migrate"


def test_an_unreachable_database_times_out_with_the_reason_and_no_traceback(
    tmp_path: Path,
) -> None:
    env = {"ORI_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = oriserver("db", "wait", "--timeout=1", "--interval=0.2", env=env, cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("oriserver: gave up after 1 s waiting for revision")
    assert "cannot reach the database at postgresql://nobody@127.0.0.1:1/none" in line
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"ORI_DATABASE_URL": "mysql://u@db/x"}, (), "ORI_DATABASE_URL"),
        ({"ORI_DATABASE_URL": "sqlite://"}, (), "ORI_DATABASE_URL"),
        ({}, ("--timeout=0",), "--timeout"),
        ({}, ("--interval=soon",), "--interval"),
    ],
    ids=["unsupported-scheme", "no-sqlite-path", "zero-timeout", "bad-interval"],
)
def test_a_bad_url_or_option_is_a_usage_error_with_exit_2(
    env: dict[str, str], args: tuple[str, ...], named: str, tmp_path: Path
) -> None:
    result = oriserver("db", "wait", *args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


# --- --reachable: the migration Job's first step, before there is any schema -----------


def test_reachable_returns_at_once_on_an_empty_database_and_never_migrates(
    unmigrated_url: str, tmp_path: Path
) -> None:
    env = {"ORI_DATABASE_URL": unmigrated_url}
    result = oriserver("db", "wait", "--reachable", "--timeout=5", env=env, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"ready: {unmigrated_url} answers (revision none)\n"
    current = oriserver("db", "current", env=env, cwd=tmp_path)
    assert "revision none" in current.stdout, "db wait --reachable must not migrate"


@pytest.mark.postgres
def test_reachable_waits_until_the_database_exists_then_exits_0(
    postgres_server_url: str, tmp_path: Path
) -> None:
    name = f"ori_reach_{time.monotonic_ns()}"
    url = postgres.with_database(postgres_server_url, name)
    waiting = subprocess.Popen(
        [sys.executable, "-m", "oriserver", "db", "wait", "--reachable", "--timeout=60",
         "--interval=0.2"],
        env=server_env({"ORI_DATABASE_URL": url}), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = next_line(waiting)
        assert first.startswith("waiting for the database to answer: cannot reach the database")
        assert still_waiting_after(waiting, 1.0), "it returned before the database existed"
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        out, err = waiting.communicate(timeout=30)
        assert (waiting.returncode, out, err) == (0, f"ready: {url} answers (revision none)\n", "")
    finally:
        waiting.kill()
        waiting.wait()
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_reachable_times_out_on_an_unreachable_database_with_exit_1_and_the_reason(
    tmp_path: Path,
) -> None:
    env = {"ORI_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = oriserver(
        "db", "wait", "--reachable", "--timeout=1", "--interval=0.2", env=env, cwd=tmp_path
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("oriserver: gave up after 1 s waiting for the database to answer:")
    assert "cannot reach the database at postgresql://nobody@127.0.0.1:1/none" in line
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args", [("--reachable=yes",), ("--reachable", "--timeout=-1")], ids=["value", "timeout"]
)
def test_reachable_with_a_bad_option_is_a_usage_error_with_exit_2(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    result = oriserver("db", "wait", *args, env={}, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--reachable" in result.stderr or "--timeout" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_ends_a_wait_at_once_with_exit_1_and_one_line(
    unmigrated_url: str, tmp_path: Path
) -> None:
    """As an init container it is PID 1, which has no default action for SIGTERM: the
    handler is what lets a pod stop without waiting out its grace period."""
    waiting = start_waiting({"ORI_DATABASE_URL": unmigrated_url}, tmp_path)
    assert next_line(waiting) == BEHIND
    started = time.monotonic()
    waiting.terminate()
    _, err = waiting.communicate(timeout=10)
    assert waiting.returncode == 1
    assert err.splitlines() == ["oriserver: stopped by SIGTERM"]
    assert time.monotonic() - started < 2
