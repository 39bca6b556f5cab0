"""Readers must not starve callers: ``readers`` SubscribeEvents streams catch up from position 0
on a log of ``reader_events`` events while MathHelper calls run at a fixed offered load.

The same server and the same offered load are measured twice: ``readers_s`` without readers
(the baseline), then ``readers_s`` while the readers read (they are not required to finish:
the phase is bounded in time). The figure is the normal calls' p50/p99 in each phase; the
target is p99 <= ``p99_target_ms`` with the readers. Run with each engine (ORI_SERVER_ENGINE).

On a machine with 2 cores or more the server (and its event host) runs on CPU 0 and the load and
the readers on the others, so that the figure is the server's own scheduling of readers against
callers, not the clients taking its core.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence

from harness.load import Load
from harness.load.stats import percentile
from harness.procs import spawn, stop_group
from harness.reliability.kit import Context, codes_text, graceful_stop, server_env
from harness.reliability.verdict import Result
from harness.servers import ROOT, running_server
from oriserver.config.database import DatabaseUrl
from oriserver.service.calls import SUCCEEDED, SUMMATION, CallRecord
from oriserver.store.factory import open_store
from oriserver.store.rows import rows_from_records

SEED_BATCH = 5_000  # calls per appended batch: 10,000 events


def seed(url: str, events: int) -> int:
    """Append ``events`` events (half as many Summation calls) straight into the store, with the
    totals folded as they go; returns the head position."""
    now = time.time_ns()
    peer = "ipv4:10.1.2.3:50000"
    origin = uuid.uuid4().int
    store = open_store(DatabaseUrl.parse(url))
    try:
        head = 0
        for start in range(0, events // 2, SEED_BATCH):
            records: list[CallRecord] = [
                (SUMMATION, i, 1, SUCCEEDED, i, peer, now + i, now + i + 1000, None, None)
                for i in range(10**9 + start, 10**9 + min(start + SEED_BATCH, events // 2))
            ]
            appended = store.append_rows(
                rows_from_records(records, origin, start, "seed"), project=True
            )
            head = int(appended.head)
        return head
    finally:
        store.close()


def _latency_ms(load: Load, since: float, until: float) -> tuple[float | None, float | None]:
    ordered = sorted(load.result(since, until).latencies_us)
    p50, p99 = percentile(ordered, 0.50), percentile(ordered, 0.99)
    return (None if p50 is None else p50 / 1000, None if p99 is None else p99 / 1000)


SERVER_CPUS = {0}


def _client_cpus() -> set[int] | None:
    """The CPUs the clients may use when the server gets CPU 0 to itself, or None (no pinning)."""
    mine = os.sched_getaffinity(0)
    others = mine - SERVER_CPUS
    return others if others and mine >= SERVER_CPUS else None


@contextlib.contextmanager
def _pinned(cpus: set[int] | None) -> Iterator[None]:
    """This process (the load generator's threads) on ``cpus`` for the block."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _read(
    target: str, streams: int, until: int, seconds: float, cpus: set[int] | None
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "harness.reliability.readers_client"]
    if cpus is not None:
        argv = [shutil.which("taskset") or "taskset", "--cpu-list", _cpu_list(cpus), *argv]
    argv += [target, str(streams), str(until), str(seconds)]
    process = spawn(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"started":
        stop_group(process, grace_s=1)
        raise RuntimeError("the readers process did not start")
    return process


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def readers(ctx: Context) -> Result:
    return _readers(ctx, "readers", "grpcio")


def readers_native(ctx: Context) -> Result:
    return _readers(ctx, "readers-native", "native")


def _readers(ctx: Context, name: str, engine: str) -> Result:
    o = ctx.options
    with ctx.database() as url:
        head = seed(url, o.reader_events)
        env = server_env(url, "async", ORI_SERVER_ENGINE=engine)
        clients = _client_cpus()
        server_cpus = None if clients is None else _cpu_list(SERVER_CPUS)
        with (
            running_server(ctx.workdir, env, cpus=server_cpus) as server,
            _pinned(clients),
            Load(server.target, clients=o.clients, rate=o.readers_rate) as load,
        ):
            time.sleep(o.warmup_s)
            base_start = time.monotonic()
            time.sleep(o.readers_s)
            base_end = time.monotonic()
            ctx.say(f"{o.readers} readers from position 0 of {head:,}")
            process = _read(server.target, o.readers, head, o.readers_s, clients)
            try:
                out, err = process.communicate(timeout=o.readers_s + 40)
            finally:
                stop_group(process, grace_s=1)
            read_end = time.monotonic()
            load.stop()
            lines = out.decode().strip().splitlines()
            if not lines:
                raise RuntimeError(f"the readers process said nothing: {err.decode()[-2000:]}")
            report = json.loads(lines[-1])
            result = Result(name, load.held_rps(base_start, read_end), o.readers_rate,
                            load.errors(), 0, 0, "-", error_details=load.details)  # fmt: skip
            graceful_stop(result, server)
    _judge(result, o.p99_target_ms, o.readers, head, report,
           _latency_ms(load, base_start, base_end), _latency_ms(load, base_end, read_end),
           load.errors(base_end, read_end))  # fmt: skip
    result.notes.append(
        f"engine {engine}; {o.readers_rate:g} calls/s offered in both phases; "
        + (
            "server pinned to CPU 0, clients to CPUs " + _cpu_list(clients)
            if clients
            else "not pinned"
        )
    )
    return result


def _judge(  # noqa: PLR0917 - one call site, every argument a figure of the run
    result: Result,
    target_ms: float,
    streams: int,
    head: int,
    report: dict[str, object],
    baseline: tuple[float | None, float | None],
    reading: tuple[float | None, float | None],
    errors: object,
) -> None:
    read: Sequence[int] = report["read"]  # type: ignore[assignment]
    caught_up: Sequence[float] = report["caught_up_s"]  # type: ignore[assignment]
    refused: dict[str, int] = report["errors"]  # type: ignore[assignment]
    done = [s for s in caught_up if s > 0]
    result.recovery = (
        f"p50/p99 {_ms(baseline[0])} / {_ms(baseline[1])} without readers, "
        f"{_ms(reading[0])} / {_ms(reading[1])} with them"
    )
    result.check(
        "calls answered in both phases", None not in (*baseline, *reading), result.recovery
    )
    result.check(f"p99 with readers <= {target_ms:g} ms", (reading[1] or 1e9) <= target_ms,
                 _ms(reading[1]))  # fmt: skip
    result.check("no call failed while the readers read", not errors, codes_text(errors))  # type: ignore[arg-type]
    result.check("every reader was served", len(read) == streams and not refused,
                 f"{len(read)} streams; errors: {refused or 'none'}")  # fmt: skip
    result.notes.append(
        f"readers read {sum(read):,} events in all; {len(done)} of {streams} reached position "
        f"{head:,}" + (f" (slowest after {max(done):.1f} s)" if done else "")
    )
