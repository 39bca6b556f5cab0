"""Real oriserver instances for tests: in a background thread, or as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oriserver.bootstrap import ServerApp, build_server
from oriserver.config import Settings
from tests.support.engines import ENGINE_VARIABLE


class ServerThread:
    """A real server built by the composition root (build_server) in this process.

    The name is historical: the server runs on its engine's own threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app: ServerApp | None = None

    def start(self) -> ServerThread:
        self.app = build_server(self.settings)
        self.app.start()
        return self

    @property
    def port(self) -> int:
        assert self.app is not None
        return self.app.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float = 1.0) -> int:
        if self.app is None:
            return 0
        app, self.app = self.app, None
        return app.stop(grace)


@contextlib.contextmanager
def running_server(settings: Settings) -> Iterator[ServerThread]:
    server = ServerThread(replace(settings, port=0, listen_host="127.0.0.1")).start()
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(target: str, timeout: float = 20.0) -> None:
    """Block until the server at target answers SERVING to a health check."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server at {target} did not become SERVING")
            time.sleep(0.05)


@dataclass
class ServerProcess:
    """An ``oriserver`` subprocess whose stdout (the logs) is kept in a file."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text()

    def records(self, message: str | None = None, **fields: object) -> list[dict[str, Any]]:
        """The JSON log records, oldest first; only those with this message and these
        field values when given."""
        records = [json.loads(line) for line in self.logs().splitlines() if line.startswith("{")]
        return [
            r
            for r in records
            if message in (None, r.get("message")) and all(r.get(k) == v for k, v in fields.items())
        ]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(30)


def server_env(extra: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment minus any ORI_* the developer has set, plus extra."""
    source = base or os.environ
    env = {k: v for k, v in source.items() if not k.startswith("ORI_")}
    env.update({"ORI_LISTEN_HOST": "127.0.0.1", "ORI_LOG_FORMAT": "json", "ORI_METRICS_PORT": "0"})
    env["ORI_SERVER_ENGINE"] = source.get(ENGINE_VARIABLE, "grpcio")
    env.update(extra)
    return env


def start_server_process(
    tmp_path: Path, extra_env: Mapping[str, str], *, wait: bool = True, args: tuple[str, ...] = ()
) -> ServerProcess:
    port = int(extra_env.get("ORI_PORT", 0)) or free_port()
    env = server_env({"ORI_PORT": str(port), **extra_env})
    log_path = tmp_path / f"server-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "oriserver", *args],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(process, port, log_path)
    if wait:
        try:
            wait_serving(server.target)
        except TimeoutError:
            server.kill()
            raise AssertionError(f"server did not start; its output:\n{server.logs()}") from None
    return server
