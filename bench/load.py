"""Closed-loop gRPC load on MathHelper: N calls always in flight (run: python -m bench.load)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc

from bench.stats import LoadResult
from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc

MIXES = ("summation", "factorial", "both")
Call = Callable[[], Awaitable[object]]


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

    @property
    def channel_count(self) -> int:
        """More connections than calls in flight would leave some idle."""
        return min(self.connections, self.concurrency)

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


@dataclass
class _Tally:
    ok: int = 0
    all_ok: int = 0
    latencies_us: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def _calls(stub: pb_grpc.MathHelperStub, spec: LoadSpec) -> list[Call]:
    summation = pb.SummationInput(first=20, last=22)
    factorial = pb.FactorialInput(base=spec.factorial_base)
    timeout = spec.call_timeout_s

    def call_summation() -> Awaitable[object]:
        return stub.Summation(summation, timeout=timeout)

    def call_factorial() -> Awaitable[object]:
        return stub.Factorial(factorial, timeout=timeout)

    chosen = {"summation": [call_summation], "factorial": [call_factorial]}
    return chosen.get(spec.mix, [call_summation, call_factorial])


async def _worker(calls: list[Call], offset: int, measure_ns: int, end_ns: int, t: _Tally) -> None:
    """One call in flight at a time, back to back, until the window ends."""
    index = offset
    while (started := time.monotonic_ns()) < end_ns:
        call = calls[index % len(calls)]
        index += 1
        try:
            await call()
        except grpc.aio.AioRpcError as error:
            if measure_ns <= time.monotonic_ns() < end_ns:
                t.errors[error.code().name] += 1
            continue
        except Exception as error:
            if measure_ns <= time.monotonic_ns() < end_ns:
                t.errors[type(error).__name__] += 1
            continue
        finished = time.monotonic_ns()
        t.all_ok += 1
        if measure_ns <= finished < end_ns:
            t.ok += 1
            t.latencies_us.append((finished - started) // 1000)


async def open_channels(spec: LoadSpec, timeout_s: float = 10.0) -> list[grpc.aio.Channel]:
    """Separate connections (a local subchannel pool each), connected before the clock starts."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(spec.target, options=options) for _ in range(spec.channel_count)
    ]
    try:
        ready = asyncio.gather(*(channel.channel_ready() for channel in channels))
        await asyncio.wait_for(ready, timeout_s)
    except BaseException as error:
        await asyncio.gather(*(channel.close() for channel in channels))
        if isinstance(error, TimeoutError):
            raise ConnectionError(f"no connection to {spec.target} within {timeout_s:g}s") from None
        raise
    return channels


async def _cpu_at(monotonic_s: float) -> float:
    await asyncio.sleep(max(0.0, monotonic_s - time.monotonic()))
    return time.process_time()


async def run_load(
    spec: LoadSpec, start_at: float | None = None, channels: list[grpc.aio.Channel] | None = None
) -> LoadResult:
    """Warm up, then measure for spec.duration_s; start_at is a time.monotonic() instant."""
    own = channels is None
    channels = channels if channels is not None else await open_channels(spec)
    try:
        start = time.monotonic() if start_at is None else start_at
        measure, end = start + spec.warmup_s, start + spec.warmup_s + spec.duration_s
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        stubs = [pb_grpc.MathHelperStub(channel) for channel in channels]
        tally = _Tally()
        cpu_before = asyncio.ensure_future(_cpu_at(measure))
        cpu_after = asyncio.ensure_future(_cpu_at(end))
        measure_ns, end_ns = int(measure * 1e9), int(end * 1e9)
        await asyncio.gather(
            *(
                _worker(_calls(stubs[i % len(stubs)], spec), i, measure_ns, end_ns, tally)
                for i in range(spec.concurrency)
            )
        )
        client_cpu = await cpu_after - await cpu_before
    finally:
        if own:
            await asyncio.gather(*(channel.close() for channel in channels))
    return LoadResult(
        window_s=spec.duration_s,
        ok=tally.ok,
        latencies_us=tally.latencies_us,
        errors=dict(tally.errors),
        client_cpu_s=client_cpu,
        calls_including_warmup=tally.all_ok,
    )


async def _child(spec: LoadSpec) -> None:
    """Load-process protocol: connect, say "ready", wait for "go <monotonic start>", report JSON."""
    channels = await open_channels(spec)
    try:
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        word, _, start = line.partition(" ")
        if word != "go":
            return
        result = await run_load(spec, float(start), channels)
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    print(json.dumps(result.to_wire()), flush=True)


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    add_load_arguments(parser)
    parser.add_argument("--load-procs", type=int, default=1, help="load processes, merged")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    spec = spec_from_args(args)
    try:
        if args.child:
            # Bounded even if the coordinator vanishes: the kernel ends this process.
            signal.alarm(math.ceil(spec.warmup_s + spec.duration_s + spec.call_timeout_s + 60))
            asyncio.run(_child(spec))
            return 0
        if args.load_procs > 1:
            from bench.loadprocs import run_processes

            result = run_processes(spec, args.load_procs)
        else:
            result = asyncio.run(run_load(spec))
    except (ConnectionError, RuntimeError) as error:  # LoadFailed is a RuntimeError
        print(f"bench.load: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result.summary()) if args.json else describe(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
