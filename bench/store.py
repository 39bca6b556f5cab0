"""The store suite: sustained append throughput through the batching writer, no gRPC.

Events are built before the clock starts, then handed to a real BatchingWriter
as fast as it accepts them; the clock stops when the last batch is committed.
So the figure is what the writer thread and the database sustain, batch after
batch, in events per second.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from datetime import UTC, datetime

from bench.report import SuiteReport
from bench.runner import Context
from oriserver.config import load_settings
from oriserver.config.database import DatabaseUrl
from oriserver.domain.events import CalculationRequested, CalculationSucceeded, Inputs, Method
from oriserver.event_system import host_options
from oriserver.recording.writer import BatchingWriter
from oriserver.service.ports import Appender
from oriserver.store import migrate
from oriserver.store.factory import open_store
from oriserver.store.hosted import HostedStore

TARGET_PG = 50_000
HOSTED_PG = "PostgreSQL, through the event host"
BATCH_SIZES = (1000, 5000)


def _pairs(count: int) -> list[tuple[CalculationRequested, CalculationSucceeded]]:
    now = datetime.now(UTC)
    pairs = []
    for i in range(count):
        calculation_id = uuid.uuid4()
        common = {
            "calculation_id": calculation_id,
            "method": Method.SUMMATION,
            "inputs": Inputs(first=i, last=1),
            "client_ip": "10.1.2.3",
            "instance_id": "bench",
            "occurred_at": now,
        }
        pairs.append(
            (
                CalculationRequested(event_id=uuid.uuid4(), **common),  # type: ignore[arg-type]
                CalculationSucceeded(event_id=uuid.uuid4(), result=i + 1, **common),  # type: ignore[arg-type]
            )
        )
    return pairs


def _cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process from /proc (0 when there is none)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _one_run(
    database: DatabaseUrl,
    batch_size: int,
    pairs: list[tuple[CalculationRequested, CalculationSucceeded]],
    hosted: bool,
) -> dict[str, float]:
    migrate.upgrade(database)
    store = open_store(database)
    total = 2 * len(pairs)
    host = None
    target: Appender = store
    if hosted:  # as the server runs it: batches go to an event host process
        settings = load_settings({"ORI_DATABASE_URL": database.url, "ORI_LOG_LEVEL": "warning"})
        host = target = HostedStore(host_options(settings), call_timeout_s=60)
        host.start()
    writer = BatchingWriter(
        target, batch_size=batch_size, flush_interval_s=0.05, capacity=total, sync=False
    )
    writer.start()
    host_cpu0 = _cpu_seconds(host.pid if host else None)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for requested, outcome in pairs:
        writer.submit(requested, outcome)
    while writer.stats.appended < total:
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0 + _cpu_seconds(host.pid if host else None) - host_cpu0
    writer.stop(10)
    if host is not None:
        host.close()
    stored = store.head()
    store.close()
    return {
        "events": total,
        "seconds": elapsed,
        "events_per_s": total / elapsed,
        "batches": writer.stats.flushes,
        "python_cpu_us_per_event": cpu / total * 1e6,
        "stored": stored,
    }


def _RUNS(  # noqa: N802 - a table of runs, read like a constant
    sqlite: DatabaseUrl, postgres: DatabaseUrl, batch_size: int
) -> list[tuple[str, DatabaseUrl, bool]]:
    runs = [("SQLite", sqlite, False), ("PostgreSQL", postgres, False)]
    if batch_size == BATCH_SIZES[0]:  # the production path, at the default batch size
        runs.append((HOSTED_PG, postgres, True))
    return runs


def store_suite(ctx: Context) -> SuiteReport:
    quick = ctx.options.duration_s < 5
    count = 10_000 if quick else 100_000  # calculations; twice as many events
    pairs = _pairs(count)
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    postgres = ctx.postgres()
    for round_number in range(ctx.options.rounds):
        for batch_size in BATCH_SIZES:
            sqlite = DatabaseUrl.parse(
                f"sqlite:///{ctx.workdir}/store-{round_number}-{batch_size}.db"
            )
            pg_url = postgres.create_database()
            try:
                for name, database, hosted in _RUNS(sqlite, DatabaseUrl.parse(pg_url), batch_size):
                    runs.setdefault((name, batch_size), []).append(
                        _one_run(database, batch_size, pairs, hosted)
                    )
            finally:
                postgres.drop_database(pg_url)
    columns = [
        "store",
        "batch size",
        "events per run",
        "events/s (median)",
        "batches",
        "writer CPU µs/event",
        "all stored",
    ]
    rows = []
    for (name, batch_size), results in runs.items():
        rows.append([
            name, f"{batch_size:,}", f"{results[0]['events']:,.0f}",
            f"{statistics.median(r['events_per_s'] for r in results):,.0f}",
            f"{statistics.median(r['batches'] for r in results):,.0f}",
            f"{statistics.median(r['python_cpu_us_per_event'] for r in results):.1f}",
            "yes" if all(r["stored"] >= r["events"] for r in results) else "NO",
        ])  # fmt: skip
    default_pg = statistics.median(r["events_per_s"] for r in runs[(HOSTED_PG, BATCH_SIZES[0])])
    verdict = "met" if default_pg >= TARGET_PG else "NOT met"
    ratio_lines = [
        f"PostgreSQL through the event host at the default batch size: {default_pg:,.0f} "
        f"events/s; target >= {TARGET_PG:,}: {verdict}"
    ]
    notes = [
        f"{ctx.options.rounds} round(s); each run appends {2 * count:,} events into a fresh database "
        "through oriserver's BatchingWriter (async mode) and waits until the last batch commits. "
        "'writer CPU' is this Python process's CPU (the writer thread and the submitting loop), "
        "plus the event host process's for the row that goes through it.",
        f"Database: {ctx.postgres_source}.",
    ]
    raw = {"runs": {f"{k[0]}/{k[1]}": v for k, v in runs.items()}}
    return SuiteReport(
        "store",
        "store: append throughput through the batching writer",
        columns,
        rows,
        notes,
        ratio_lines,
        [],
        raw,
    )
