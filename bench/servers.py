"""Starts the servers under test as subprocesses, waits until they answer, and stops them."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.procs import spawn, stop_group
from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
KINDS = {
    "reference-threads": ["-m", "bench.reference_server"],
    "reference-aio": ["-m", "bench.reference_aio_server"],
    "reference-native": ["-m", "bench.reference_native_server"],
    "oriserver": ["-m", "oriserver", "serve"],
}
# oriserver as a container would run it, minus what a benchmark must control.
ORISERVER_BASE = {
    "ORI_LISTEN_HOST": "127.0.0.1",
    "ORI_LOG_FORMAT": "json",
    "ORI_LOG_RPCS": "true",
    "ORI_METRICS_PORT": "0",
    "ORI_INSTANCE_ID": "bench",
    "ORI_SHUTDOWN_GRACE_SECONDS": "2",
    "ORI_EVENTS_SHUTDOWN_FLUSH_SECONDS": "10",
}


class ServerFailed(Exception):
    """The server did not become ready; log_tail holds its last output lines."""

    def __init__(self, message: str, log_tail: list[str]) -> None:
        super().__init__(message)
        self.log_tail = log_tail


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    kind: str
    process: Popen[bytes]
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 12) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line[:400] for line in text.splitlines()[-lines:]]

    def stop(self) -> int | None:
        return stop_group(self.process, grace_s=15)


def _environment(
    kind: str, port: int, base: Mapping[str, str], overrides: Mapping[str, str]
) -> dict[str, str]:
    """base without any ORI_* of the developer's, plus the server's settings."""
    env = {k: v for k, v in base.items() if not k.startswith("ORI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
    if kind == "oriserver":
        env.update(ORISERVER_BASE)
        env.update(overrides)
        env["ORI_PORT"] = str(port)
    return env


def metrics_samples(port: int) -> int | None:
    """Samples on http://127.0.0.1:port/metrics, or None when nothing answers there."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            text = reply.read().decode(errors="replace")
    except OSError:
        return None
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def _answers(channel: grpc.Channel, kind: str) -> bool:
    try:
        if kind == "oriserver":  # readiness as an orchestrator sees it: the health service
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
        pb_grpc.MathHelperStub(channel).Summation(pb.SummationInput(first=1, last=1), timeout=1)
    except grpc.RpcError:
        return False
    return True


def start_server(
    kind: str,
    workdir: Path,
    label: str,
    *,
    base_env: Mapping[str, str],
    env: Mapping[str, str],
    timeout_s: float = 30.0,
    cpus: str | None = None,
) -> RunningServer:
    """Start and wait until ready (SERVING for oriserver); stdout and stderr go to a log file.

    ``cpus`` pins the server and every child it starts to those CPUs (taskset's list)."""
    port = free_port()
    argv = [sys.executable, *KINDS[kind], *([str(port)] if kind != "oriserver" else [])]
    if cpus is not None:
        argv = [shutil.which("taskset") or "taskset", "--cpu-list", cpus, *argv]
    log_path = workdir / f"{label}.log"
    with log_path.open("wb") as log:
        process = spawn(
            argv,
            env=_environment(kind, port, base_env, env),
            cwd=workdir,
            stdout=log,
            stderr=log,
        )
    server = RunningServer(kind, process, port, log_path)
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(server.target) as channel:
        while not _answers(channel, kind):
            if process.poll() is not None:
                code = server.stop()
                raise ServerFailed(f"exited with code {code} before serving", server.log_tail())
            if time.monotonic() > deadline:
                server.stop()
                raise ServerFailed(f"not ready within {timeout_s:.0f}s", server.log_tail())
            time.sleep(0.05)
    return server
