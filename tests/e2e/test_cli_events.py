"""``ori totals`` and ``ori events`` against a real server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.servers import ServerProcess, free_port, server_env, start_server
from tests.support.cli import ORI, ori
from tests.support.engines import both_engines
from tests.support.servers import ServerThread

engine = both_engines  # every test here runs on grpcio and on pygrpc-native


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
    from harness.servers import start_server

    server = start_server(tmp_path, {"ORI_EVENTS_ENABLED": "false"})
    try:
        result = ori("totals", port=server.port)
    finally:
        server.kill()
    assert result.returncode == 1
    assert result.stderr.startswith("ori: UNIMPLEMENTED")


class Follower:
    """``ori events --follow`` in a subprocess; its stdout lines are collected as they come."""

    def __init__(self, port: int, *args: str) -> None:
        env = server_env({"ORI_PORT": str(port)})
        env.pop("ORI_LISTEN_HOST")
        self.process = subprocess.Popen(
            [sys.executable, "-c", ORI, "events", "--follow", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_lines(self, count: int, timeout: float = 30.0) -> None:
        assert _eventually(lambda: len(self.lines) >= count, timeout), self.lines

    def finish(self, timeout: float = 60.0) -> tuple[int, list[str]]:
        """Exit code and stderr lines, once the follower has ended."""
        assert self.process.stderr is not None
        err = self.process.stderr.read()
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code, err.splitlines()


class RestartableServer:
    """A server subprocess on a fixed port with its SQLite file, which can be restarted."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {
            "ORI_PORT": str(free_port()),
            "ORI_DATABASE_URL": f"sqlite:///{tmp_path / 'log.db'}",
        }
        self.port = int(self.env["ORI_PORT"])
        self.process: ServerProcess = start_server(tmp_path, self.env)

    def stop(self) -> None:
        self.process.signal(signal.SIGTERM)
        assert self.process.wait(30) == 0

    def start(self, **extra: str) -> None:
        self.process = start_server(self.tmp_path, {**self.env, **extra})


@pytest.fixture
def restartable(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = RestartableServer(tmp_path)
    yield server
    server.process.kill()


def _sums(port: int, firsts: list[int]) -> None:
    for first in firsts:
        assert ori("summation", str(first), "100", port=port).returncode == 0


def test_follow_survives_a_server_restart_printing_every_event_once_in_order(
    restartable: RestartableServer,
) -> None:
    before, after = [0, 1, 2], [10, 11, 12]
    total = 2 * len(before + after)  # a requested and a succeeded event per call
    follower = Follower(restartable.port, "--from", "1", "--limit", str(total))
    _sums(restartable.port, before)
    follower.wait_for_lines(2 * len(before))  # printed before the server goes away
    restartable.stop()
    time.sleep(1.0)  # the follower retries against a closed port for a while
    restartable.start()
    _sums(restartable.port, after)
    code, err = follower.finish()
    assert code == 0, err
    assert [int(line.split()[0]) for line in follower.lines] == list(range(1, total + 1))
    firsts = [int(line.split("first=")[1].split()[0]) for line in follower.lines]
    assert firsts == [first for first in before + after for _ in range(2)]
    assert [line.split()[2] for line in follower.lines] == ["requested", "succeeded"] * (total // 2)
    assert len(err) == 2, err  # once per outage: lost, then back
    assert err[0].startswith("ori: event stream lost (UNAVAILABLE: ")
    assert err[0].endswith("); reconnecting")
    assert err[1] == f"ori: reconnected; following from position {2 * len(before) + 1}"


def test_follow_ends_with_exit_1_when_the_restarted_server_refuses_the_stream(
    restartable: RestartableServer,
) -> None:
    follower = Follower(restartable.port, "--from", "1")
    _sums(restartable.port, [1])
    follower.wait_for_lines(2)
    restartable.stop()
    restartable.start(ORI_EVENTS_ENABLED="false")  # SubscribeEvents is now UNIMPLEMENTED
    code, err = follower.finish()
    assert code == 1
    assert len(err) == 2, err
    assert "reconnecting" in err[0]
    assert err[1].startswith("ori: UNIMPLEMENTED: ")


def test_ctrl_c_ends_a_reconnecting_follower_with_exit_0(
    restartable: RestartableServer,
) -> None:
    follower = Follower(restartable.port)
    time.sleep(1.0)  # let it subscribe
    restartable.stop()
    time.sleep(1.0)  # now it is between attempts
    follower.process.send_signal(signal.SIGINT)
    code, err = follower.finish()
    assert code == 0
    assert len(err) == 1, err
    assert err[0].endswith("; reconnecting")
