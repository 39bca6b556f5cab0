"""The store suite: sustained appends through the production path, against a plain COPY.

Every run appends the same calls, built before the clock starts:

- **plain COPY (reference)**: psycopg 3's text ``COPY`` of the events those calls
  make, as ready Python values (UUIDs, datetimes, IP text), one transaction per
  batch, into the same ``events`` table with its indexes. What the database takes
  from a client that does nothing else.
- **production path**: the call records go to oriserver's CallShipper (async), which
  ships them to the event host as the server does (a child process for PostgreSQL),
  which builds the rows, COPYs them and folds the totals in the same transaction.
- **backlog drain**: the database is cut off (a proxy refuses connections) while the
  records arrive; once they are all buffered the proxy lets connections through, and
  the figure is events/s from the first batch committed to the last.

The clock stops when the last batch is committed; every run checks that the table
holds exactly the events it was given.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.report import SuiteReport
from bench.runner import Context
from harness.faultproxy import FaultProxy
from harness.postgres import proxied
from oriserver.bootstrap import build_host_client
from oriserver.config import load_settings
from oriserver.config.database import DatabaseUrl
from oriserver.config.settings import BATCH_SIZE
from oriserver.recording.shipper import CallShipper
from oriserver.service.calls import SUCCEEDED, SUMMATION, CallRecord
from oriserver.store import migrate
from oriserver.store.factory import open_store
from oriserver.store.rows import COLUMNS

PRODUCTION_PG_TARGET = 90_000  # events/s
PRODUCTION_SQLITE_TARGET = 50_000
RATIO_TARGET = 0.85  # production path / plain COPY
DRAIN_TARGET = 0.60  # backlog drain / plain COPY


def _records(count: int) -> list[CallRecord]:
    now = time.time_ns()
    peer = "ipv4:10.1.2.3:50000"
    return [
        (SUMMATION, i, 1, SUCCEEDED, i + 1, peer, now + i, now + i + 1000, None, None)
        for i in range(count)
    ]


def _plain_rows(records: list[CallRecord]) -> list[tuple[Any, ...]]:
    """The same events as ready Python values, the way a plain psycopg client holds them."""
    rows = []
    for method, first, last, _, result, _, requested_ns, finished_ns, _, _ in records:
        calc = uuid.uuid4()
        name = "Summation" if method == SUMMATION else "Factorial"
        at = datetime.fromtimestamp(requested_ns / 1e9, UTC)
        done = datetime.fromtimestamp(finished_ns / 1e9, UTC)
        common = (name, first, last, None)
        rows.append((uuid.uuid4(), calc, "CalculationRequested", *common, None, None, None))
        rows[-1] += ("10.1.2.3", "bench", None, at)
        rows.append((uuid.uuid4(), calc, "CalculationSucceeded", *common, result, None, None))
        rows[-1] += ("10.1.2.3", "bench", None, done)
    return rows


def _count(database: DatabaseUrl) -> int:
    store = open_store(database)
    try:
        return store.head()
    finally:
        store.close()


def _plain_copy(url: str, rows: list[tuple[Any, ...]], batch: int) -> float:
    """Seconds for a plain text COPY of ``rows``, ``batch`` per transaction."""
    copy_sql = f"COPY events ({', '.join(COLUMNS)}) FROM STDIN"
    with psycopg.connect(url) as connection:
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            with connection.transaction(), connection.cursor().copy(copy_sql) as copy:
                for row in rows[start : start + batch]:
                    copy.write_row(row)
        return time.perf_counter() - started


@dataclass
class Shipped:
    seconds: float  # first record handed over to the last batch committed
    drain_seconds: float  # first batch committed to the last
    cpu_s: float  # this process and the event host
    stored: int


def _ship(
    url: str,
    records: list[CallRecord],
    batch: int,
    before: Callable[[CallShipper], None] | None,
    connected: Callable[[], None] | None = None,
) -> Shipped:
    """Records through CallShipper and the event host, as the server ships them."""
    settings = load_settings(
        {
            "ORI_DATABASE_URL": url,
            "ORI_EVENTS_BATCH_SIZE": str(batch),
            "ORI_EVENTS_BUFFER_SIZE": str(2 * len(records)),
            "ORI_LOG_LEVEL": "warning",
            "ORI_INSTANCE_ID": "bench",
        }
    )
    host = build_host_client(settings)
    total = 2 * len(records)
    commits: list[float] = []
    shipper = CallShipper(
        host,
        batch_events=batch,
        flush_interval_s=0.05,
        capacity_events=total,
        sync=False,
        timeout_s=30,
        on_written=lambda _head: commits.append(time.perf_counter()),
    )
    try:
        host.ping(60)  # started and connected before the clock, as in a running server
        if connected is not None:
            connected()
        host_pid = host.pid
        cpu_before = time.process_time() + _cpu(host_pid)
        started = time.perf_counter()
        shipper.start()
        for record in records:
            shipper.record(record)
        if before is not None:
            before(shipper)
        while shipper.stats.appended < total:
            if shipper.stats.dropped:
                raise RuntimeError(f"{shipper.stats.dropped} events dropped")
            time.sleep(0.001)
        finished = time.perf_counter()
        cpu = time.process_time() + _cpu(host_pid) - cpu_before
    finally:
        shipper.stop(30)
        host.close()
    stored = _count(settings.events.database)
    return Shipped(finished - started, commits[-1] - commits[0], cpu, stored)


def _cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # SC_CLK_TCK is 100 on Linux


def _fresh(ctx: Context) -> str:
    url = ctx.postgres().create_database()
    migrate.upgrade(DatabaseUrl.parse(url))
    return url


def _backlog(ctx: Context, records: list[CallRecord], batch: int) -> Shipped:
    """The database cut off while the records arrive, then restored: the drain rate."""
    url = _fresh(ctx)
    try:
        with FaultProxy.for_url(url) as proxy:

            def restore(shipper: CallShipper) -> None:
                while shipper.buffered < 2 * len(records) - batch:  # all but a batch in flight
                    time.sleep(0.01)
                proxy.heal()

            # Cut once the host is up and connected, as a running server's would be.
            return _ship(proxied(url, proxy.port), records, batch, restore, proxy.cut)
    finally:
        ctx.postgres().drop_database(url)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def store_suite(ctx: Context) -> SuiteReport:
    quick = ctx.options.quick
    calls = 10_000 if quick else 75_000  # twice as many events: 150,000 in a full run
    batch = int(BATCH_SIZE.value)
    records = _records(calls)
    plain_rows = _plain_rows(records)
    total = 2 * calls
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {"production": [], "drain": []}
    complete = True

    def note(name: str, seconds: float, stored: int, cpu_s: float | None = None) -> float:
        nonlocal complete
        complete = complete and stored == total
        rates.setdefault(name, []).append(total / seconds)
        if cpu_s is not None:
            cpu.setdefault(name, []).append(cpu_s * 1e6 / total)
        return total / seconds

    for round_no in range(1, ctx.options.rounds + 1):
        print(f"[store] round {round_no}/{ctx.options.rounds}", flush=True, file=sys.stderr)
        url = _fresh(ctx)
        try:
            plain = note("plain COPY, PostgreSQL (reference)", _plain_copy(url, plain_rows, batch),
                         _count(DatabaseUrl.parse(url)))  # fmt: skip
        finally:
            ctx.postgres().drop_database(url)
        url = _fresh(ctx)
        try:
            shipped = _ship(url, records, batch, None)
            production = note("production path, PostgreSQL", shipped.seconds, shipped.stored,
                              shipped.cpu_s)  # fmt: skip
        finally:
            ctx.postgres().drop_database(url)
        sqlite = DatabaseUrl.parse(f"sqlite:///{ctx.workdir}/store-{round_no}.db")
        migrate.upgrade(sqlite)
        shipped = _ship(sqlite.url, records, batch, None)
        note("production path, SQLite", shipped.seconds, shipped.stored, shipped.cpu_s)
        drained = _backlog(ctx, records, batch)
        # Rate over the drain: the events after the first committed batch, first to last commit.
        drain_rate = (total - batch) / drained.drain_seconds if drained.drain_seconds > 0 else 0
        rates.setdefault("backlog drain, PostgreSQL", []).append(drain_rate)
        complete = complete and drained.stored == total
        ratios["production"].append(production / plain)
        ratios["drain"].append(drain_rate / plain)

    columns = ["path", "events/s (median)", "rounds", "Python CPU µs/event"]
    rows = [
        [name, f"{_median(values):,.0f}", ", ".join(f"{v:,.0f}" for v in values),
         f"{_median(cpu[name]):.1f}" if name in cpu else "-"]
        for name, values in rates.items()
    ]  # fmt: skip
    pg = _median(rates["production path, PostgreSQL"])
    sq = _median(rates["production path, SQLite"])
    production_ratio, drain_ratio = _median(ratios["production"]), _median(ratios["drain"])

    def verdict(value: float, target: float) -> str:
        return "met" if value >= target else "NOT met"

    lines = [
        f"- production path, PostgreSQL: **{pg:,.0f}** events/s; target ≥ "
        f"{PRODUCTION_PG_TARGET:,}: {verdict(pg, PRODUCTION_PG_TARGET)}",
        f"- production path / plain COPY: **{production_ratio:.3f}** (rounds: "
        + ", ".join(f"{v:.3f}" for v in ratios["production"])
        + f"); target ≥ {RATIO_TARGET:.2f}: {verdict(production_ratio, RATIO_TARGET)}",
        f"- production path, SQLite: **{sq:,.0f}** events/s; target ≥ "
        f"{PRODUCTION_SQLITE_TARGET:,}: {verdict(sq, PRODUCTION_SQLITE_TARGET)}",
        f"- backlog drain / plain COPY: **{drain_ratio:.3f}** (rounds: "
        + ", ".join(f"{v:.3f}" for v in ratios["drain"])
        + f"); target ≥ {DRAIN_TARGET:.2f}: {verdict(drain_ratio, DRAIN_TARGET)}",
        f"- every run stored exactly the {total:,} events it was given: "
        + ("yes" if complete else "**NO**"),
    ]
    notes = [
        f"{ctx.options.rounds} round(s) of {total:,} events ({calls:,} calls) each, in batches "
        f"of {batch:,} (the default ORI_EVENTS_BATCH_SIZE), each run into a fresh database. "
        "'Python CPU' is the benchmark process (the shipper) plus the event host process; "
        "PostgreSQL's own CPU is not in it. Ratios are taken per round.",
        f"Database: {ctx.postgres_source}.",
    ]
    failures = [] if complete else ["- a run did not store exactly the events it was given"]
    raw = {"rates": rates, "cpu_us_per_event": cpu, "ratios": ratios, "events": total}
    return SuiteReport(
        "store", "store: appends through the production path", columns, rows, notes, lines,
        failures, raw,
    )  # fmt: skip
