"""The ``ori`` command against a real server: output, exit codes, usage errors."""

from __future__ import annotations

import json
import time

import pytest

from harness.servers import free_port
from tests.support.cli import ori
from tests.support.engines import both_engines
from tests.support.servers import ServerThread

engine = both_engines  # every test here runs on grpcio and on pygrpc-native


@pytest.fixture
def port(server: ServerThread) -> int:
    return server.port


def test_summation_prints_the_number_alone(port: int) -> None:
    result = ori("summation", "2", "40", port=port)
    assert (result.returncode, result.stdout, result.stderr) == (0, "42\n", "")


def test_factorial_takes_a_negative_base_without_double_dash(port: int) -> None:
    result = ori("factorial", "-5", port=port)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        "ori: INVALID_ARGUMENT: factorial is undefined for negative numbers"
    )


def test_an_overflow_is_reported_with_its_status_code(port: int) -> None:
    result = ori("summation", str(2**63 - 1), "1", port=port)
    assert result.returncode == 1
    assert result.stderr == "ori: OUT_OF_RANGE: summation result exceeds maximum integer value\n"


def test_json_prints_the_whole_response_message(port: int) -> None:
    result = ori("--json", "summation", "-3", "10", port=port)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"result": "7", "first": "-3", "last": "10"}


def test_global_options_also_work_after_the_command(port: int) -> None:
    result = ori("factorial", "5", "--json", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"result": "120", "base": "5"}


def test_host_and_port_flags_override_the_environment(port: int) -> None:
    result = ori(
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "factorial",
        "3",
        env={"ORI_PORT": "1", "ORI_HOST": "nowhere.invalid"},
    )
    assert (result.returncode, result.stdout) == (0, "6\n")


def test_health_prints_serving(port: int) -> None:
    result = ori("health", port=port)
    assert (result.returncode, result.stdout) == (0, "SERVING\n")


def test_health_of_an_unknown_service_is_not_found(port: int) -> None:
    result = ori("health", "--service", "NoSuchService", port=port)
    assert result.returncode == 1
    assert result.stderr.startswith("ori: NOT_FOUND")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("summation", "1"), "the following arguments are required: LAST"),
        (("summation", "1", "x"), "'x' is not an integer"),
        (("factorial", "1.5"), "'1.5' is not an integer"),
        (("factorial", str(2**63)), "outside the 64-bit integer range"),
        (("summation", str(-(2**63) - 1), "0"), "outside the 64-bit integer range"),
        (("--timeout", "0", "health"), "positive number of seconds"),
        (("--port", "99999", "health"), "not a port number"),
        (("divide", "1", "2"), "invalid choice"),
        ((), "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_exit_2_before_connecting(args: tuple[str, ...], fragment: str) -> None:
    # Nothing listens on this port: a usage error must be found before any call.
    result = ori(*args, port=free_port())
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_ori_port_variable_is_a_usage_error() -> None:
    result = ori("health", env={"ORI_PORT": "abc"})
    assert result.returncode == 2
    assert (
        result.stderr == "ori: configuration error: ORI_PORT: must be a whole number (got 'abc')\n"
    )


def test_a_dead_server_fails_within_the_deadline() -> None:
    start = time.monotonic()
    result = ori("--timeout", "2", "summation", "1", "2", port=free_port())
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert result.stderr.startswith("ori: UNAVAILABLE: ")
    assert elapsed < 10


def test_an_unresponsive_server_hits_the_deadline() -> None:
    import socket

    with socket.socket() as silent:  # accepts TCP connections but never speaks HTTP/2
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        start = time.monotonic()
        result = ori("--timeout", "1", "factorial", "3", port=silent.getsockname()[1])
        elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert result.stderr.startswith(("ori: DEADLINE_EXCEEDED", "ori: UNAVAILABLE"))
    assert elapsed < 8


@pytest.mark.parametrize("command", ["summation", "factorial", "health"])
def test_every_command_explains_itself_with_an_example(command: str) -> None:
    result = ori(command, "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout
    assert f"ori {command}" in result.stdout
