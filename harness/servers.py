"""The one server launcher: oriserver or a plain reference server as a subprocess on a free
loopback port, ready when it answers, stopped with SIGTERM, its output kept in a file.

Servers run in a process group of their own, tied to this process by ``PR_SET_PDEATHSIG``
(``harness/procs.py``), so a worker forked by ``ORI_WORKERS`` or the event host is stopped with
the server and nothing outlives the caller, even if the caller is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.procs import spawn, stop_group
from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
KINDS = {
    "reference-threads": ["-m", "harness.reference.threads"],
    "reference-aio": ["-m", "harness.reference.aio"],
    "reference-native": ["-m", "harness.reference.native"],
    "oriserver": ["-m", "oriserver"],
}
# What every oriserver started here gets unless the caller says otherwise: loopback only, JSON
# logs a caller can read back, no fixed metrics port to collide on.
EVENT_HOST = "oriserver.eventhost.main"  # in the event host child's command line
ORISERVER_BASE = {"ORI_LISTEN_HOST": "127.0.0.1", "ORI_LOG_FORMAT": "json", "ORI_METRICS_PORT": "0"}


class ServerFailed(RuntimeError):
    """The server did not become ready; log_tail holds its last output lines."""

    def __init__(self, message: str, log_tail: list[str]) -> None:
        super().__init__(message + "; its output ends with:\n" + "\n".join(log_tail))
        self.log_tail = log_tail


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A server process group; stdout and stderr (for oriserver the JSON logs) go to log_path."""

    kind: str
    process: Popen[bytes]
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> list[str]:
        return [line[:400] for line in self.logs().splitlines()[-lines:]]

    def records(self, message: str | None = None, **fields: object) -> list[dict[str, Any]]:
        """The JSON log records, oldest first; only those with this message and these field
        values when given."""
        records = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return [
            r
            for r in records
            if message in (None, r.get("message")) and all(r.get(k) == v for k, v in fields.items())
        ]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the server process alone (its children see it die, as in production)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(30)

    def stop(self, grace_s: float = 60) -> int | None:
        """SIGTERM the group, SIGKILL what is left after grace_s; the exit code if it exited."""
        return stop_group(self.process, grace_s=grace_s)

    def children(self) -> list[psutil.Process]:
        """Live direct children: ORI_WORKERS workers, or the event host."""
        with contextlib.suppress(psutil.Error):
            return [p for p in psutil.Process(self.pid).children() if p.status() != "zombie"]
        return []

    def event_host(self, timeout: float = 20.0) -> psutil.Process:
        """The live event host child (the server starts it at its first recorded call)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in self.children():
                with contextlib.suppress(psutil.Error):  # gone or a zombie since listed
                    if EVENT_HOST in " ".join(child.cmdline()):
                        return child
            time.sleep(0.05)
        raise TimeoutError(f"the server has had no event host process for {timeout:g} s")


def server_env(extra: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """base (default: this process's environment) minus any ORI_* set there, plus oriserver's
    harness defaults, plus extra."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if not k.startswith("ORI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
    env.update(ORISERVER_BASE)
    env.update(extra)
    return env


def wait_serving(target: str, timeout: float = 20.0, *, kind: str = "oriserver") -> None:
    """Block until the server answers: SERVING to a health check for oriserver (readiness as an
    orchestrator sees it), a Summation for a reference server."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        while not _answers(channel, kind):
            if time.monotonic() > deadline:
                raise TimeoutError(f"server at {target} did not become ready in {timeout:g} s")
            time.sleep(0.05)


def _answers(channel: grpc.Channel, kind: str) -> bool:
    try:
        if kind == "oriserver":
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
        pb_grpc.MathHelperStub(channel).Summation(pb.SummationInput(first=1, last=1), timeout=1)
    except grpc.RpcError:
        return False
    return True


def start_server(
    workdir: Path,
    env: Mapping[str, str] | None = None,
    *,
    kind: str = "oriserver",
    port: int = 0,
    args: tuple[str, ...] = (),
    base_env: Mapping[str, str] | None = None,
    wait: bool = True,
    timeout_s: float = 60.0,
    cpus: str | None = None,
    label: str | None = None,
) -> ServerProcess:
    """Start a server and (unless ``wait`` is false) wait until it is ready, else ServerFailed.

    ``env`` goes to oriserver on top of ``server_env``; reference servers get ``base_env`` only.
    ``cpus`` pins the server and every child it starts to those CPUs (taskset's list).
    """
    port = port or int((env or {}).get("ORI_PORT", 0)) or free_port()
    if kind == "oriserver":
        argv = [sys.executable, *KINDS[kind], *args]
        full_env = server_env({**(env or {}), "ORI_PORT": str(port)}, base_env)
    else:
        argv = [sys.executable, *KINDS[kind], str(port)]
        full_env = server_env({}, base_env)
    if cpus is not None:
        argv = [shutil.which("taskset") or "taskset", "--cpu-list", cpus, *argv]
    log_path = workdir / f"{label or kind}-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        process = spawn(argv, env=full_env, cwd=workdir, stdout=log, stderr=log)
    server = ServerProcess(kind, process, port, log_path)
    if wait:
        _wait_ready(server, timeout_s)
    return server


def _wait_ready(server: ServerProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(server.target) as channel:
        while not _answers(channel, server.kind):
            if server.process.poll() is not None:
                code = server.stop()
                raise ServerFailed(f"exited with code {code} before serving", server.log_tail())
            if time.monotonic() > deadline:
                server.stop()
                raise ServerFailed(f"not ready within {timeout_s:.0f}s", server.log_tail())
            time.sleep(0.05)


@contextlib.contextmanager
def running_server(
    workdir: Path, env: Mapping[str, str], **options: Any
) -> Iterator[ServerProcess]:
    """start_server for the block; stopped (SIGTERM, then SIGKILL) afterwards."""
    server = start_server(workdir, env, **options)
    try:
        yield server
    finally:
        server.stop()
