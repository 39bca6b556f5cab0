"""Retention as an operator and a client see it: `oriserver events archive` and `rebuild`,
and the events API and `ori events` once older events were archived."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from harness.servers import server_env
from oriserver._generated import mathhelper_pb2 as mh
from oriserver._generated import mathhelper_pb2_grpc as mh_grpc
from oriserver._generated.ori.events.v1 import events_pb2 as pb
from oriserver._generated.ori.events.v1 import events_pb2_grpc as pb_grpc
from oriserver.cli import server_main
from oriserver.config import Settings
from oriserver.config.database import DatabaseUrl
from oriserver.store.factory import open_store
from tests.support.cli import ori
from tests.support.events import many
from tests.support.servers import ServerThread

TOMORROW = (datetime.now(UTC) + timedelta(days=1)).isoformat()


def oriserver(database: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = server_env({"ORI_DATABASE_URL": database})
    return subprocess.run(
        [sys.executable, "-m", "oriserver", "events", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _totals(stub: pb_grpc.EventsServiceStub) -> pb.GetRunningTotalsResponse:
    return stub.GetRunningTotals(pb.GetRunningTotalsRequest(), timeout=5)


@pytest.fixture
def archived(
    server: ServerThread, channel: grpc.Channel, settings: Settings, tmp_path: Path
) -> tuple[pb.GetRunningTotalsResponse, Path]:
    """A server whose first 8 events (4 calls) were archived by the CLI's process, then
    one more call; returns the totals from before the archive, and the archive file."""
    calls, events = mh_grpc.MathHelperStub(channel), pb_grpc.EventsServiceStub(channel)
    for first in range(4):
        calls.Summation(mh.SummationInput(first=first, last=10), timeout=5)
    deadline = time.monotonic() + 15
    while (totals := _totals(events)).checkpoint_position != 8:
        assert time.monotonic() < deadline, totals
        time.sleep(0.05)
    output = tmp_path / "events.jsonl.gz"
    result = oriserver(
        settings.events.database.url, "archive", "--before", TOMORROW, "--output", str(output),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "archived 8 events (positions 1 to 8)" in result.stdout
    assert "the log now begins at 9" in result.stdout
    assert _totals(events).totals == totals.totals  # the archive moved no count
    calls.Summation(mh.SummationInput(first=1, last=2), timeout=5)
    while _totals(events).checkpoint_position != 10:  # recorded and folded
        assert time.monotonic() < deadline + 15
        time.sleep(0.05)
    return totals, output


def test_the_api_says_where_the_log_begins_and_refuses_archived_positions(
    archived: tuple[pb.GetRunningTotalsResponse, Path], channel: grpc.Channel
) -> None:
    stub = pb_grpc.EventsServiceStub(channel)
    reply = stub.ListEvents(pb.ListEventsRequest(), timeout=5)
    assert reply.first_position == 9
    assert [e.position for e in reply.events] == [9, 10]
    with pytest.raises(grpc.RpcError) as listed:
        stub.ListEvents(pb.ListEventsRequest(from_position=3), timeout=5)
    assert listed.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert "retained log begins at position 9" in listed.value.details()

    stream = stub.SubscribeEvents(pb.SubscribeEventsRequest(), timeout=5)
    first = next(iter(stream))
    stream.cancel()
    assert (first.event.position, first.first_position) == (9, 9)
    with pytest.raises(grpc.RpcError) as subscribed:
        list(stub.SubscribeEvents(pb.SubscribeEventsRequest(from_position=8), timeout=5))
    assert subscribed.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert "position 8 is no longer in the log" in subscribed.value.details()


def test_ori_events_says_where_the_log_begins(
    archived: tuple[pb.GetRunningTotalsResponse, Path], server: ServerThread
) -> None:
    listed = ori("events", port=server.port)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["9", "10"]
    assert "the log begins at position 9; older events were archived" in listed.stderr
    refused = ori("events", "--from", "2", port=server.port)
    assert refused.returncode == 1
    assert "OUT_OF_RANGE" in refused.stderr
    assert "begins at position 9" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_rebuild_needs_the_archives_and_then_equals_the_live_totals(
    archived: tuple[pb.GetRunningTotalsResponse, Path],
    channel: grpc.Channel,
    settings: Settings,
    tmp_path: Path,
) -> None:
    _, output = archived
    stub = pb_grpc.EventsServiceStub(channel)
    deadline = time.monotonic() + 15
    while (live := _totals(stub)).checkpoint_position != 10:
        assert time.monotonic() < deadline, live
        time.sleep(0.05)
    database = settings.events.database.url
    alone = oriserver(database, "rebuild", cwd=tmp_path)
    assert alone.returncode == 2
    assert "the log begins at position 9" in alone.stderr
    assert "--archive" in alone.stderr
    result = oriserver(database, "rebuild", "--archive", str(output), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Summation  requested=5 succeeded=5 failed=0" in result.stdout
    assert _totals(stub) == live


def _archive_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database: str, *args: str
) -> tuple[int, str]:
    monkeypatch.setenv("ORI_DATABASE_URL", database)
    try:
        code = server_main.main(["events", *args])
    except SystemExit as stop:  # argparse's usage errors
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def test_archive_refuses_bad_arguments_with_exit_code_two(
    sqlite_database: DatabaseUrl,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(sqlite_database)
    store.append(many(2))
    store.close()
    (tmp_path / "taken.gz").write_bytes(b"")
    cases = {
        ("--before", "yesterday", "--output", "x.gz"): "is not an ISO 8601 time",
        ("--before", "2026-11-01T00:00:00", "--output", "x.gz"): "has no UTC offset",
        ("--before", TOMORROW, "--output", "taken.gz"): "already exists",
        ("--before", TOMORROW, "--output", "missing/x.gz"): "is not a directory",
        ("--before", TOMORROW, "--output", "x.gz", "--batch", "0"): "must be at least 1",
    }
    for args, message in cases.items():
        code, err = _archive_in_process(monkeypatch, capsys, sqlite_database.url, "archive", *args)
        assert (code, message in err) == (2, True), (args, err)
    code, err = _archive_in_process(
        monkeypatch, capsys, sqlite_database.url, "rebuild", "--archive", "nowhere.gz"
    )
    assert code == 2
    assert "no such archive file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.db", "taken.gz"]
    assert len(open_store(sqlite_database).read(0, 10)) == 4


def test_archive_reports_an_unreachable_database_with_exit_code_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORI_DB_TIMEOUT_SECONDS", "1")
    code, err = _archive_in_process(
        monkeypatch, capsys, "postgresql://nobody@127.0.0.1:1/none",
        "archive", "--before", TOMORROW, "--output", "x.gz",
    )  # fmt: skip
    assert code == 1
    assert "archive failed" in err
    assert "nothing was removed" in err
    assert list(tmp_path.iterdir()) == []
