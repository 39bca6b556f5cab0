"""What every reliability scenario shares: the options, the context, the server environment,
the load, and the checks and waits they all use."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from harness.event_table import StoredCalls, stored_calls
from harness.load import Load
from harness.reliability.probes import Resources
from harness.reliability.verdict import Result
from harness.servers import ServerProcess
from oriserver.config.database import DatabaseUrl

MB = 1024 * 1024


@dataclass(frozen=True)
class Options:
    """Durations in seconds. FULL is the script's default, QUICK its ``--quick`` and the tests'."""

    soak_s: float = 60.0  # steady: measured load, after the warm-up
    warmup_s: float = 10.0  # steady: load before the first memory/descriptor sample
    before_s: float = 10.0  # load before a fault
    fault_s: float = 10.0  # how long the database stays cut or slow
    after_s: float = 10.0  # load after the fault ends (and after recovery was measured)
    rate: float = 400.0  # calls per second offered by all clients together; 0: unpaced
    clients: int = 8  # client threads, one connection each
    burst: int = 1000  # new connections in the burst, one call each
    burst_concurrency: int = 50  # of those, at most this many at once
    db_timeout_s: float = 1.0  # ORI_DB_TIMEOUT_SECONDS in the database fault scenarios
    latency_s: float = 0.2  # added by the proxy to every chunk, each way
    tail_window_s: float = 1.0  # async SIGKILL: calls acknowledged this long before may be lost
    recovery_timeout_s: float = 60.0  # longest wait for any recovery
    rss_growth_max: float = 0.10  # steady: end RSS / start RSS - 1
    fd_growth_max: int = 4  # steady and burst: end FDs - start FDs
    host_kills: int = 10  # host killed: SIGKILLs of the event host
    between_kills_s: float = 1.0  # host killed: load between a restart and the next kill
    # Stalls: a failed call may take ORI_DB_TIMEOUT_SECONDS plus the server's 0.5 s
    # (recording/shipper.py SYNC_MARGIN_S) plus 0.3 s of scheduling on a busy machine.
    stall_margin_s: float = 0.8
    readers: int = 100  # readers: SubscribeEvents streams from position 0
    reader_events: int = 100_000  # readers: events in the log before they start
    readers_s: float = 20.0  # readers: seconds measured with the readers, and without
    readers_rate: float = 200.0  # readers: calls per second offered in both phases
    p99_target_ms: float = 25.0  # readers: normal calls' p99 while the readers catch up


FULL = Options()
QUICK = Options(
    soak_s=3.0, warmup_s=1.5, before_s=1.0, fault_s=3.0, after_s=0.5,
    host_kills=3, between_kills_s=0.3, readers_s=4.0,
)  # fmt: skip


@dataclass
class Context:
    options: Options
    workdir: Path
    database: Callable[[], AbstractContextManager[str]]  # an empty, migrated PostgreSQL database
    say: Callable[[str], None] = lambda _line: None  # progress, for a person watching


def server_env(database_url: str, durability: str = "async", **extra: str) -> dict[str, str]:
    return {
        "ORI_DATABASE_URL": database_url,
        "ORI_DB_AUTO_MIGRATE": "false",
        "ORI_EVENTS_DURABILITY": durability,
        "ORI_LOG_RPCS": "false",
        "ORI_METRICS_PORT": "0",
        "ORI_INSTANCE_ID": "reliability",
        "ORI_SHUTDOWN_GRACE_SECONDS": "5",
        **extra,
    }


def paced_load(ctx: Context, server: ServerProcess) -> Load:
    o = ctx.options
    return Load(server.target, clients=o.clients, rate=o.rate)


def new_result(name: str, load: Load, since: float, until: float, rate: float) -> Result:
    return Result(
        scenario=name,
        held_rps=load.held_rps(since, until),
        offered_rps=rate or None,
        errors=load.errors(),
        events_expected=0,
        events_stored=0,
        recovery="-",
        error_details=load.details,
    )


def read_stored(database_url: str) -> StoredCalls:
    return stored_calls(DatabaseUrl.parse(database_url))


def graceful_stop(
    result: Result, server: ServerProcess, what: str = "SIGTERM after the load"
) -> float:
    """SIGTERM, wait for exit; checks exit code 0 (which also says no buffered event was lost)."""
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    try:
        code: int | None = server.wait(90)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - started
    result.check(
        f"{what}: clean exit", code == 0, f"exit code {code} after {took:.2f} s"
    )  # an async server exits 1 if it could not write everything it had buffered
    return took


def describe(r: Resources) -> str:
    return f"RSS {r.rss_bytes / MB:.1f} MB, {r.fds} FDs, {r.processes} process(es)"


def wait_first_ok(load: Load, since: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while (found := load.first_ok_after(since)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def recovered(result: Result, what: str, fault_end: float, when: float | None) -> None:
    if when is None:
        result.recovery = f"not within the timeout ({what})"
    else:
        result.recovery_s = when - fault_end
        result.recovery = f"{result.recovery_s:.2f} s to {what}"
    result.check("recovered on its own", when is not None, result.recovery)


def codes_text(codes: Counter[str]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(codes.items())) or "none"


def relative(offset_s: float) -> str:
    return f"{abs(offset_s) * 1000:.0f} ms {'before' if offset_s < 0 else 'after'}"


def wait_until(
    condition: Callable[[], bool], timeout: float, every_s: float = 0.02
) -> float | None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return None
        time.sleep(every_s)
    return time.monotonic()
