"""``ori totals`` and ``ori events`` against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.support.cli import ori
from tests.support.servers import ServerThread, server_env


@pytest.fixture
def port(server: ServerThread) -> int:
    for first in range(3):
        assert ori("summation", str(first), "10", port=server.port).returncode == 0
    assert ori("factorial", "-1", port=server.port).returncode == 1
    return server.port


def _eventually(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def test_totals_prints_a_table_per_method(port: int) -> None:
    def settled() -> subprocess.CompletedProcess[str] | None:
        result = ori("totals", port=port)
        return result if "head 8, lag 0" in result.stdout else None

    result = _eventually(settled)
    assert result is not None
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["method", "requested", "succeeded", "failed"]
    assert lines[1].split() == ["Summation", "3", "3", "0"]
    assert lines[2].split() == ["Factorial", "1", "0", "1"]
    assert "lag 0" in lines[3]


def test_totals_json_is_the_response_message(port: int) -> None:
    _eventually(lambda: '"failed": "1"' in ori("--json", "totals", port=port).stdout)
    reply = json.loads(ori("--json", "totals", port=port).stdout)
    assert reply["head_position"] == "8"
    assert {t["method"] for t in reply["totals"]} == {"METHOD_SUMMATION", "METHOD_FACTORIAL"}


def test_events_lists_the_log_in_order(port: int) -> None:
    result = ori("events", port=port)
    lines = result.stdout.splitlines()
    assert result.returncode == 0
    assert [int(line.split()[0]) for line in lines] == list(range(1, 9))
    assert "succeeded summation first=0 last=10 -> 10" in lines[1]
    assert "failed    factorial base=-1 -> INVALID_ARGUMENT" in lines[7]


def test_events_from_and_limit_select_a_window(port: int) -> None:
    lines = ori("events", "--from", "3", "--limit", "2", port=port).stdout.splitlines()
    assert [int(line.split()[0]) for line in lines] == [3, 4]


def test_events_json_prints_one_object_per_line(port: int) -> None:
    lines = ori("events", "--json", "--type", "failed", port=port).stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [(e["type"], e["base"]) for e in events] == [("EVENT_TYPE_CALCULATION_FAILED", "-1")]


def test_follow_streams_new_events_as_they_happen(port: int) -> None:
    env = server_env({"ORI_PORT": str(port)})
    env.pop("ORI_LISTEN_HOST")
    follower = subprocess.Popen(
        [sys.executable, "-c", "from oriserver.cli.client_main import main; raise SystemExit(main())",
         "events", "--follow", "--limit", "2", "--method", "factorial"],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.0)  # let it subscribe; it starts at the current head
    assert ori("factorial", "6", port=port).returncode == 0
    out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0
    lines = out.splitlines()
    assert "requested factorial base=6" in lines[0]
    assert "succeeded factorial base=6 -> 720" in lines[1]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("events", "--from", "-1"), "must not be negative"),
        (("events", "--limit", "0"), "must be at least 1"),
        (("events", "--method", "division"), "invalid choice"),
        (("events", "--type", "maybe"), "invalid choice"),
    ],
)
def test_bad_event_arguments_are_usage_errors(args: tuple[str, ...], fragment: str) -> None:
    result = ori(*args, port=1)
    assert result.returncode == 2
    assert fragment in result.stderr


def test_a_server_without_recording_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.support.servers import start_server_process

    server = start_server_process(tmp_path, {"ORI_EVENTS_ENABLED": "false"})
    try:
        result = ori("totals", port=server.port)
    finally:
        server.kill()
    assert result.returncode == 1
    assert result.stderr.startswith("ori: UNIMPLEMENTED")
