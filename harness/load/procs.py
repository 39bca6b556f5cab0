"""Runs the load generator in separate processes started together, and merges their results."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from harness.load.spec import LoadSpec
from harness.load.stats import LoadResult, merge
from harness.procs import spawn, stop_group

ROOT = Path(__file__).resolve().parents[2]


class LoadFailed(RuntimeError):
    """A load process did not start, connect, or report; str() says which and why."""


@dataclass(frozen=True)
class Window:
    """time.monotonic() instants (the same clock in every process on Linux)."""

    start: float
    measure: float
    end: float


def _readline(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    return process.stdout.readline().decode().strip() if ready else ""


class LoadProcesses:
    """``with LoadProcesses(spec, n) as load: window = load.go(); ...; result = load.collect()``."""

    def __init__(self, spec: LoadSpec, procs: int = 1, connect_timeout_s: float = 20.0) -> None:
        if procs < 1:
            raise ValueError("at least one load process")
        self.spec = spec
        self.procs = procs
        self.connect_timeout_s = connect_timeout_s
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> LoadProcesses:
        command = [sys.executable, "-m", "harness.load", "--child", *self.spec.to_args()]
        try:
            for _ in range(self.procs):
                self._processes.append(
                    spawn(
                        command,
                        cwd=ROOT,  # so that `-m harness.load` finds the harness package
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    )
                )
            for process in self._processes:
                if _readline(process, self.connect_timeout_s) != "ready":
                    raise LoadFailed(f"a load process did not connect: {self._stderr(process)}")
        except BaseException:
            self.close()
            raise
        return self

    def go(self, lead_s: float = 0.05) -> Window:
        """Start every load process at the same instant; returns when each phase happens."""
        start = time.monotonic() + lead_s
        for process in self._processes:
            assert process.stdin is not None
            process.stdin.write(f"go {start!r}\n".encode())
            process.stdin.flush()
        measure = start + self.spec.warmup_s
        return Window(start, measure, measure + self.spec.duration_s)

    def collect(self) -> LoadResult:
        """Wait for every process's report and merge them."""
        parts = []
        timeout = self.spec.call_timeout_s + 30
        for process in self._processes:
            try:
                out, err = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise LoadFailed(f"a load process did not finish within {timeout}s") from None
            lines = out.decode().strip().splitlines()
            if process.returncode != 0 or not lines:
                raise LoadFailed(f"a load process failed: {err.decode().strip()[-2000:]}")
            parts.append(LoadResult.from_wire(json.loads(lines[-1])))
        return merge(parts)

    def _stderr(self, process: subprocess.Popen[bytes]) -> str:
        stop_group(process, grace_s=1)
        assert process.stderr is not None
        return process.stderr.read().decode().strip()[-2000:] or f"exit code {process.returncode}"

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                stop_group(process, grace_s=1)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_processes(spec: LoadSpec, procs: int) -> LoadResult:
    """Run spec from procs load processes at once; one merged result."""
    with LoadProcesses(spec, procs) as load:
        load.go()
        return load.collect()
