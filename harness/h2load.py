"""Drives h2load (nghttp2's compiled HTTP/2 load generator) as a gRPC client.

h2load speaks gRPC when it is given a gRPC-framed request body and the two
headers gRPC needs. It counts HTTP/2 responses, not gRPC statuses, so what it
reports is checked here: every gRPC error is an HTTP 200 without a message, so
the response bytes it counted must be exactly those of the expected replies.
To keep that check exact, each method gets an h2load process of its own (its
share of the connections), all started together: one wrong reply shows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "apt-get install nghttp2-client   # Debian/Ubuntu; h2load is part of nghttp2"

# One body for both methods: SummationInput{first: 2, last: 3} read as FactorialInput is
# {base: 2} with an unknown field 2, which protobuf skips.
REQUEST = bytes.fromhex("08021003")
# The replies' gRPC-framed sizes: SummationResult{result: 5, first: 2, last: 3} and
# FactorialResult{result: 2, base: 2}, each after its 5-byte message prefix.
REPLY_BYTES = {"/MathHelper/Summation": 5 + 6, "/MathHelper/Factorial": 5 + 4}
METHODS = tuple(REPLY_BYTES)
MIXES = ("summation", "factorial", "both")


def methods(mix: str) -> tuple[str, ...]:
    """The paths for a mix: "summation", "factorial" or "both"."""
    return {"summation": METHODS[:1], "factorial": METHODS[1:], "both": METHODS}[mix]


def available() -> str | None:
    return shutil.which("h2load")


@dataclass(frozen=True)
class H2loadResult:
    seconds: float
    succeeded: int  # HTTP/2 responses with a 2xx status
    failed: int  # streams that ended without one (resets, errors, timeouts)
    data_bytes: int  # response DATA bytes
    mean_latency_ms: float
    cpu_s: float  # h2load's own user+system time

    @property
    def rps(self) -> float:
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0

    right: bool = True  # every response was exactly the expected reply


_FINISHED = re.compile(r"finished in ([\d.]+)(ms|s|us),")
_REQUESTS = re.compile(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed")
_TRAFFIC = re.compile(r"traffic: .*?, ([\d.]+)(B|KB|MB|GB) \((\d+)\) data")
_LATENCY = re.compile(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)")
_SCALE = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse(output: str, cpu_s: float) -> H2loadResult:
    finished, requests = _FINISHED.search(output), _REQUESTS.search(output)
    traffic, latency = _TRAFFIC.search(output), _LATENCY.search(output)
    if not (finished and requests and traffic and latency):
        raise ValueError(f"cannot read h2load's output:\n{output[-2000:]}")
    return H2loadResult(
        seconds=float(finished.group(1)) * _SCALE[finished.group(2)],
        succeeded=int(requests.group(1)),
        failed=int(requests.group(2)),
        data_bytes=int(traffic.group(3)),
        mean_latency_ms=float(latency.group(1)) * _SCALE[latency.group(2)] * 1000,
        cpu_s=cpu_s,
    )


def command(
    port: int,
    *,
    duration_s: float,
    connections: int,
    streams: int,
    body: Path,
    methods: tuple[str, ...] = METHODS,
    cpus: str | None = None,
) -> list[str]:
    argv = [
        "h2load", "--duration", f"{round(duration_s * 1000)}ms", "--clients", str(connections),
        "--max-concurrent-streams", str(streams), "--threads", "1", "--data", str(body),
        "--header", "content-type: application/grpc", "--header", "te: trailers",
        *(f"http://127.0.0.1:{port}{method}" for method in methods),
    ]  # fmt: skip
    return (["taskset", "--cpu-list", cpus] if cpus else []) + argv


def _combine(parts: list[H2loadResult]) -> H2loadResult:
    total = sum(part.succeeded for part in parts)
    return H2loadResult(
        seconds=max(part.seconds for part in parts),
        succeeded=total,
        failed=sum(part.failed for part in parts),
        data_bytes=sum(part.data_bytes for part in parts),
        mean_latency_ms=sum(p.mean_latency_ms * p.succeeded for p in parts) / max(total, 1),
        cpu_s=sum(part.cpu_s for part in parts),
        right=all(part.right for part in parts),
    )


def run(
    port: int,
    *,
    duration_s: float,
    connections: int = 2,
    streams: int = 8,
    methods: tuple[str, ...] = METHODS,
    cpus: str | None = None,
) -> H2loadResult:
    """One measured run: ``connections`` x ``streams`` calls always in flight, the
    connections shared out between the methods (one h2load process each)."""
    per_method = max(1, connections // len(methods))
    with tempfile.TemporaryDirectory(prefix="ori-h2load-") as folder:
        body = Path(folder) / "request.bin"
        body.write_bytes(b"\x00" + len(REQUEST).to_bytes(4, "big") + REQUEST)
        processes = [
            subprocess.Popen(
                command(
                    port,
                    duration_s=duration_s,
                    connections=per_method,
                    streams=streams,
                    body=body,
                    methods=(method,),
                    cpus=cpus,
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for method in methods
        ]
        parts = [
            _finish(process, method) for process, method in zip(processes, methods, strict=True)
        ]
    return _combine(parts)


def _finish(process: subprocess.Popen[str], method: str) -> H2loadResult:
    assert process.stdout is not None
    output = process.stdout.read()
    # wait4 gives this child's own CPU time (RUSAGE_CHILDREN would add every other child).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"h2load failed ({process.returncode}):\n{output[-2000:]}")
    result = parse(output, usage.ru_utime + usage.ru_stime)
    right = result.failed == 0 and result.data_bytes == result.succeeded * REPLY_BYTES[method]
    return H2loadResult(**{**result.__dict__, "right": right})
