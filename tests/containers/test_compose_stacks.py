"""The README's three Compose commands, run as written against the engine's Docker-compatible
API, on images built beforehand by the engine under the names the compose files give them.

Only ORI_PORT's value changes (a free port instead of 50051), and COMPOSE_PROJECT_NAME keeps
this run's containers and volumes apart from a developer's own `oriserver` project.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from harness.servers import free_port
from tests.containers import images
from tests.containers.engine import Engine, clean_env, docker_api, explain, wait_for
from tests.delivery.tools import find_tool
from tests.support.cli import ori

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

README = images.ROOT / "README.md"
COMPOSE_LINE = re.compile(r"^(ORI_PORT=\S+ docker-compose .*?)\s*(?:#.*)?$", re.MULTILINE)


def readme_commands() -> dict[str, list[str]]:
    """The README's `ORI_PORT=50051 docker-compose ...` lines: up, dev up, down (argv after env)."""
    found: dict[str, list[str]] = {}
    for line in COMPOSE_LINE.findall(README.read_text()):
        argv = shlex.split(line)[1:]
        key = (
            "down" if argv[-1] == "down" else ("dev" if "docker-compose.dev.yml" in argv else "up")
        )
        found.setdefault(key, argv)
    assert set(found) == {"up", "dev", "down"}, f"README compose commands: {found}"
    return found


@pytest.fixture(scope="module")
def api(container_engine: Engine) -> Iterator[dict[str, str]]:
    with docker_api(container_engine) as env:
        yield env


class Stack:
    """One `up` in the foreground, as a developer runs it, and the commands around it."""

    def __init__(self, container_engine: Engine, api: Mapping[str, str], folder: Path) -> None:
        self.engine = container_engine
        self.folder = folder
        self.port = free_port()
        self.project = f"oriserver-test-{os.getpid()}-{self.port}"
        self.env = clean_env(
            api,
            ORI_PORT=str(self.port),
            ORISERVER_METRICS_PORT=str(free_port()),
            ORISERVER_POSTGRES_IMAGE=images.POSTGRES_IMAGE,
            COMPOSE_PROJECT_NAME=self.project,
        )
        self.log = folder / f"compose-up-{self.port}.log"
        self.up: subprocess.Popen[bytes] | None = None

    def command(self, argv: list[str]) -> list[str]:
        assert argv[0] == "docker-compose"
        return [find_tool("docker-compose"), *argv[1:]]

    def run(self, argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(argv), cwd=self.folder, env=self.env,
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def start(self, argv: list[str]) -> None:
        self.engine.volumes += [f"{self.project}_pgdata", f"{self.project}_dev-data"]
        with self.log.open("wb") as out:
            self.up = subprocess.Popen(
                self.command(argv), cwd=self.folder, env=self.env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def containers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        listed = self.engine.out("ps", "--all", "--filter", label, "--format", "{{.Names}}")
        return listed.split()

    def serving(self) -> bool:
        return ori("--host", "127.0.0.1", "health", port=self.port).returncode == 0

    def comes_up(self, seconds: float) -> bool:
        """Whether the stack serves within ``seconds``; False at once if `up` has exited."""
        up = self.up
        assert up is not None
        wait_for(lambda: up.poll() is not None or self.serving(), seconds)
        return up.poll() is None and self.serving()

    def close(self, files: list[str]) -> None:
        """Whatever the test left running: `up` stopped, the project's containers removed."""
        if self.up is not None and self.up.poll() is None:
            self.up.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.up.wait(timeout=60)
            if self.up.poll() is None:
                self.up.kill()
                self.up.wait(timeout=30)
        flags = [part for file in files for part in ("-f", file)]
        self.run(["docker-compose", *flags, "down", "--remove-orphans"], timeout=180)
        self.engine.containers += self.containers()


@contextlib.contextmanager
def health_checks(container_engine: Engine, stack: Stack) -> Iterator[None]:
    """podman runs HEALTHCHECKs from systemd timers, which these machines lack; run them here
    every 2 s for the stack's containers, as the timers would (`depends_on: service_healthy`
    waits on them). Docker runs its own."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(2):
            for name in stack.containers():
                container_engine.run("healthcheck", "run", name, check=False, timeout=30)

    thread = threading.Thread(target=tick, daemon=True)
    if container_engine.is_podman:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=40)


def down_and_check(stack: Stack, down: list[str], volume: str) -> None:
    result = stack.run(down)
    assert result.returncode == 0, explain(result)
    assert stack.up is not None
    code = stack.up.wait(timeout=60)
    output = stack.output()
    # docker-compose's attached `up`, talking to podman's Docker API, sometimes asks about the
    # container after `down` has removed it and exits 1 on podman's answer. That one error is
    # the tool's race, not ours, and only when the server's last shutdown ended cleanly.
    podman_race = "does not exist in database: no such container" in output
    # The dev stack logs text, the prod stack JSON.
    stopped = max(output.rfind("stopped lost_events=0"), output.rfind('"stopped","lost_events":0'))
    stopped_clean = stopped > output.rfind("shutting down") >= 0
    assert code == 0 or (podman_race and stopped_clean), output
    assert stack.containers() == [], "down left containers behind"
    assert stack.engine.exists("volume", f"{stack.project}_{volume}"), "down removed the volume"


def source_copy() -> Path:
    """The compose files and src/ in a folder the container's UID 10001 can read."""
    folder = Path(tempfile.mkdtemp(prefix="oriserver-compose-"))
    folder.chmod(0o755)
    for name in ("docker-compose.yml", "docker-compose.dev.yml"):
        shutil.copy(images.ROOT / name, folder / name)
    shutil.copytree(
        images.ROOT / "src", folder / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    return folder


def test_the_dev_stack_serves_on_ori_port_and_reloads_after_a_source_change(
    container_engine: Engine, api: dict[str, str], development_image: str
) -> None:
    commands = readme_commands()
    folder = source_copy()
    stack = Stack(container_engine, api, folder)
    try:
        with health_checks(container_engine, stack):
            stack.start(commands["dev"])
            assert stack.comes_up(90), stack.output()
            before = ori("--host", "127.0.0.1", "summation", "2", "3", port=stack.port)
            assert before.stdout == "5\n", before.stderr
            (server,) = stack.containers()
            started = container_engine.inspect(server, "{{.State.StartedAt}}")
            # A change the server can only show by loading the edited file.
            arithmetic = folder / "src" / "oriserver" / "domain" / "arithmetic.py"
            text = arithmetic.read_text()
            assert "    total = first + last\n" in text
            arithmetic.write_text(text.replace("total = first + last\n", "total = first + last + 1000\n"))  # fmt: skip

            def reloaded() -> bool:
                result = ori("--host", "127.0.0.1", "summation", "2", "3", port=stack.port)
                return result.stdout == "1005\n"

            assert wait_for(reloaded, 60), stack.output()
            assert stack.up is not None
            assert stack.up.poll() is None, "`up` exited"
            assert stack.containers() == [server]
            assert container_engine.inspect(server, "{{.State.StartedAt}}") == started, (
                "a restart, not a reload"
            )
            down_and_check(stack, commands["down"], "dev-data")
    finally:
        stack.close(["docker-compose.dev.yml"])
        shutil.rmtree(folder, ignore_errors=True)


def psql(stack: Stack, query: str) -> list[list[str]]:
    result = stack.run(
        ["docker-compose", "exec", "-T", "postgres", "psql", "--username=oriserver",
         "--dbname=oriserver", "--no-align", "--tuples-only", "--field-separator=,",
         "--command", query]
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    return [line.split(",") for line in result.stdout.split()]


def test_the_prod_stack_migrates_records_calls_in_postgresql_and_totals_match(
    container_engine: Engine, api: dict[str, str], production_image: str, postgres_image: str
) -> None:
    commands = readme_commands()
    folder = source_copy()
    stack = Stack(container_engine, api, folder)
    try:
        with health_checks(container_engine, stack):
            stack.start(commands["up"])
            assert stack.comes_up(120), stack.output()
            migrate = [name for name in stack.containers() if "migrate" in name]
            assert len(migrate) == 1, stack.containers()
            assert container_engine.inspect(migrate[0], "{{.State.ExitCode}}") == "0"
            calls = [("summation", "2", "3")] * 3 + [("factorial", "5")] * 2
            for call in calls:
                result = ori("--host", "127.0.0.1", *call, port=stack.port)
                assert result.returncode == 0, result.stderr
            query = "SELECT method, event_type, count(*) FROM events GROUP BY 1, 2 ORDER BY 1, 2"
            expected = [
                ["Factorial", "CalculationRequested", "2"], ["Factorial", "CalculationSucceeded", "2"],
                ["Summation", "CalculationRequested", "3"], ["Summation", "CalculationSucceeded", "3"],
            ]  # fmt: skip
            assert wait_for(lambda: psql(stack, query) == expected, 30), psql(stack, query)

            def totals() -> dict[str, object]:
                result = stack.run(["docker-compose", "exec", "-T", "oriserver", "ori", "--json", "totals"])  # fmt: skip
                assert result.returncode == 0, explain(result)
                reply: dict[str, object] = json.loads(result.stdout)
                return reply

            # The events API answers loopback callers only, so `ori totals` runs inside the
            # container, as docs/deployment.md shows; the projection catches up asynchronously.
            assert wait_for(
                lambda: totals()["checkpoint_position"] == totals()["head_position"], 30
            )
            rows = totals()["totals"]
            assert isinstance(rows, list)
            by_method = {row["method"]: row for row in rows}
            recorded = psql(stack, query)
            assert {f"METHOD_{method.upper()}" for method, _, _ in recorded} == set(by_method)
            for method, kind, count in recorded:
                row = by_method[f"METHOD_{method.upper()}"]
                field = "requested" if kind == "CalculationRequested" else "succeeded"
                assert row[field] == count, (row, kind, count)
            down_and_check(stack, commands["down"], "pgdata")
    finally:
        stack.close(["docker-compose.yml"])
        shutil.rmtree(folder, ignore_errors=True)
