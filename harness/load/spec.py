"""A measured window of load: what to send, warm-up then the window, the benchmark's figures."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from harness.load.stats import LoadResult
from harness.load.threads import MIXES, Load


@dataclass(frozen=True)
class LoadSpec:
    """What to send: where, how many calls in flight over how many connections, for how long."""

    target: str
    concurrency: int = 16
    connections: int = 4
    duration_s: float = 5.0
    warmup_s: float = 1.0
    mix: str = "both"
    factorial_base: int = 10
    call_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.connections < 1:
            raise ValueError("concurrency and connections must be at least 1")
        if self.duration_s <= 0 or self.warmup_s < 0:
            raise ValueError("duration must be positive and warm-up not negative")
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}")

    def load(self) -> Load:
        """Closed loop: one client thread per call in flight, sharing the connections."""
        return Load(
            self.target,
            clients=self.concurrency,
            deadline_s=self.call_timeout_s,
            connections=self.connections,
            mix=self.mix,
            factorial_base=self.factorial_base,
        )

    def to_args(self) -> list[str]:
        """Command-line arguments that rebuild this spec in a load process."""
        return [
            f"--target={self.target}",
            f"--concurrency={self.concurrency}",
            f"--connections={self.connections}",
            f"--duration={self.duration_s}",
            f"--warmup={self.warmup_s}",
            f"--mix={self.mix}",
            f"--factorial-base={self.factorial_base}",
            f"--call-timeout={self.call_timeout_s}",
        ]


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def run_load(spec: LoadSpec, start_at: float | None = None, load: Load | None = None) -> LoadResult:
    """Warm up, then measure for spec.duration_s; start_at is a time.monotonic() instant. A
    ``load`` given (connected) is used and stopped; otherwise one is connected first."""
    load = load if load is not None else spec.load().connect()
    start = time.monotonic() if start_at is None else start_at
    measure, end = start + spec.warmup_s, start + spec.warmup_s + spec.duration_s
    load.start(at=start)
    try:
        _sleep_until(measure)
        cpu_before = time.process_time()
        _sleep_until(end)
        client_cpu = time.process_time() - cpu_before
    finally:
        load.stop()
    return load.result(measure, end, client_cpu)


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="127.0.0.1:50051", help="host:port (loopback)")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    parser.add_argument("--connections", type=int, default=4, help="separate HTTP/2 connections")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--mix", choices=MIXES, default="both", help="which RPCs to call")
    parser.add_argument("--factorial-base", type=int, default=10, help="negative ones fail")
    parser.add_argument("--call-timeout", type=float, default=10.0, help="deadline per call")


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    return LoadSpec(
        target=args.target,
        concurrency=args.concurrency,
        connections=args.connections,
        duration_s=args.duration,
        warmup_s=args.warmup,
        mix=args.mix,
        factorial_base=args.factorial_base,
        call_timeout_s=args.call_timeout,
    )


def describe(result: LoadResult) -> str:
    """A human-readable summary of one result."""
    points = result.percentiles_us()
    errors = ", ".join(f"{code}={n}" for code, n in sorted(result.errors.items())) or "none"
    return (
        f"rps {result.rps:.0f}  ok {result.ok}  p50 {points['p50']} us  p99 {points['p99']} us  "
        f"errors {errors}  load-gen CPU {result.client_cpu_s / result.window_s:.2f} cores "
        f"({result.load_procs} process{'es' if result.load_procs > 1 else ''})"
    )
