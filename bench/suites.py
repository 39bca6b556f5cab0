"""The benchmark suites by name, each a comparison; a new suite is one more entry in SUITES."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from bench.report import (
    Ratio,
    SuiteReport,
    failure_lines,
    ratio_line,
    recorded_per_call,
    server_table,
)
from bench.runner import Config, Context, Run, run_interleaved
from bench.store import store_suite

OFF = {"ORI_EVENTS_ENABLED": "false"}
PG_ASYNC = {"ORI_EVENTS_ENABLED": "true", "ORI_EVENTS_DURABILITY": "async"}
PG_SYNC = {"ORI_EVENTS_ENABLED": "true", "ORI_EVENTS_DURABILITY": "sync"}
ORISERVER_NOTE = (
    "oriserver runs as deployed: JSON logs with one line per RPC, written to a file; health and "
    "reflection on; metrics off unless the row says otherwise."
)


def all_recorded(run: Run) -> str | None:
    share = recorded_per_call(run)
    if share is None or share >= 0.99:
        return None
    return f"only {share:.0%} of the calls were recorded"


def metrics_answered(run: Run) -> str | None:
    return None if run.metrics_samples else "nothing answered on the metrics port"


def two_processes(run: Run) -> str | None:
    return None if run.server_procs >= 2 else "only one server process ran"


@dataclass(frozen=True)
class Suite:
    """A named measurement: run(ctx) does the work and returns its report."""

    description: str
    run: Callable[[Context], SuiteReport]


def server_suite(
    ctx: Context,
    *,
    name: str,
    title: str,
    configs: Sequence[Config],
    ratios: Sequence[Ratio],
    extras: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> SuiteReport:
    """Interleave the configurations for the configured rounds and tabulate them."""
    runs = run_interleaved(ctx, name, configs)
    columns, rows = server_table(configs, runs, ctx.options.rounds, extras)
    lines, raw_ratios = [], []
    for ratio in ratios:
        line, raw = ratio_line(ratio, runs)
        lines.append(line)
        raw_ratios.append(raw)
    raw = {
        "configs": [{**asdict(c), "env": dict(c.env), "key": c.key} for c in configs],
        "runs": {key: [run.summary() for run in key_runs] for key, key_runs in runs.items()},
        "ratios": raw_ratios,
        "table": {"columns": columns, "rows": rows},
    }
    notes = list(notes)
    if any(c.database == "postgresql" for c in configs) and ctx.postgres_source:
        notes.append(f"Database: {ctx.postgres_source}.")
    return SuiteReport(name, title, columns, rows, notes, lines, failure_lines(runs), raw)


BARE = {**OFF, "ORI_LOG_RPCS": "false", "ORI_REFLECTION": "false"}
NATIVE = {"ORI_SERVER_ENGINE": "native"}


def rpc(ctx: Context) -> SuiteReport:
    high = ctx.options.high_concurrency
    configs = [
        Config("plain grpcio thread-pool server", "reference-threads", high),
        Config("plain grpc.aio server", "reference-aio", high),
        Config("plain pygrpc-native server", "reference-native", high),
        Config("oriserver, grpcio engine, defaults", "oriserver", high, OFF, metrics=True),
        Config("oriserver, grpcio engine, bare", "oriserver", high, BARE),
        Config("oriserver, native engine, defaults", "oriserver", high, {**OFF, **NATIVE},
               metrics=True),
        Config("oriserver, native engine, bare", "oriserver", high, {**BARE, **NATIVE}),
    ]  # fmt: skip
    if 1 in ctx.options.concurrency and high > 1:  # latency, timed call by call
        configs += [
            Config("plain grpcio thread-pool server", "reference-threads", 1, latency=True),
            Config("oriserver, grpcio engine, defaults", "oriserver", 1, OFF, metrics=True,
                   latency=True),
            Config("oriserver, native engine, defaults", "oriserver", 1, {**OFF, **NATIVE},
                   metrics=True, latency=True),
        ]  # fmt: skip
    (threads, aio, native, ori, ori_bare, ori_native, ori_native_bare) = (
        c.key for c in configs[:7]
    )
    ratios = [
        Ratio("efficiency: oriserver (grpcio engine, defaults) / plain thread-pool server",
              ori, threads, 0.90, metrics_answered),
        Ratio("native: oriserver (native engine, defaults) / plain thread-pool server",
              ori_native, threads, 2.5, metrics_answered),
        Ratio("observability, grpcio engine: oriserver defaults - plain thread-pool server",
              ori, threads, 10.0, metrics_answered, delta=True),
        Ratio("observability, native engine: oriserver defaults - plain pygrpc-native server",
              ori_native, native, 10.0, metrics_answered, delta=True),
        Ratio("for information: oriserver defaults - bare (log line, metrics, reflection)",
              ori, ori_bare, delta=True),
        Ratio("for information: native defaults - native bare", ori_native, ori_native_bare,
              delta=True),
        Ratio("for information: plain grpc.aio / plain thread-pool", aio, threads),
        Ratio("for information: plain pygrpc-native / plain thread-pool", native, threads),
    ]  # fmt: skip
    notes = [
        "Plain servers (harness/reference/threads.py, harness/reference/aio.py, "
        "harness/reference/native.py) serve grpcio's example servicer and nothing else. "
        "oriserver runs with recording off; 'defaults' is as deployed (a JSON log line per "
        "RPC written to a file, metrics on, health and reflection on); 'bare' turns off the "
        "log line, metrics and reflection. Efficiency ratios divide calls per server "
        "CPU-second; differences are in server CPU µs per call.",
    ]
    return server_suite(
        ctx,
        name="rpc",
        title="rpc: oriserver against plain servers, CPU per answered call",
        configs=configs,
        ratios=ratios,
        extras=("metrics",),
        notes=notes,
    )


def recording(ctx: Context) -> SuiteReport:
    high = ctx.options.high_concurrency
    configs = [
        Config("recording off", "oriserver", high, OFF),
        Config("recording on, PostgreSQL, async", "oriserver", high, PG_ASYNC, "postgresql"),
        Config("recording on, PostgreSQL, sync", "oriserver", high, PG_SYNC, "postgresql"),
        Config("recording on, SQLite, async", "oriserver", high, PG_ASYNC, "sqlite"),
    ]
    off, pg_async, pg_sync, sqlite = (c.key for c in configs)
    ratios = [
        Ratio("PostgreSQL async / recording off", pg_async, off, 0.90, all_recorded),
        Ratio("PostgreSQL sync / recording off", pg_sync, off, 0.70, all_recorded),
        Ratio("serving process only: PostgreSQL async - recording off", pg_async, off, 5.0,
              all_recorded, basis="serving", delta=True),
        Ratio("for information: SQLite async / recording off", sqlite, off, None, all_recorded),
    ]  # fmt: skip
    notes = [
        "Efficiency ratios divide calls per CPU-second of the server's process tree (the "
        "serving process and its event host); the serving-process line counts the serving "
        "process alone, which is what the calls wait on. Each run records into a fresh "
        "database (ORI_DB_AUTO_MIGRATE=true). PostgreSQL runs on the same machine, unpinned; "
        "its CPU is not in the server's and is shown per event. 'recorded/call' counts "
        "CalculationSucceeded events in the database after the server stopped, per answered "
        "call (warm-up included): 1.00 means every call was recorded. " + ORISERVER_NOTE
    ]
    return server_suite(
        ctx,
        name="recording",
        title="recording: the cost of recording every calculation",
        configs=configs,
        ratios=ratios,
        extras=("db_cpu", "stored"),
        notes=notes,
    )


def metrics(ctx: Context) -> SuiteReport:
    high = ctx.options.high_concurrency
    configs = [
        Config("metrics off (ORI_METRICS_PORT=0)", "oriserver", high, OFF),
        Config("metrics on", "oriserver", high, OFF, metrics=True),
    ]
    ratios = [
        Ratio("metrics on / metrics off", configs[1].key, configs[0].key, 0.95, metrics_answered)
    ]
    notes = [
        "Recording off in both, so only the metrics differ. '/metrics samples' comes from one "
        "scrape after the measured window ('-': nothing answered, so metrics were not on). "
        + ORISERVER_NOTE
    ]
    return server_suite(
        ctx,
        name="metrics",
        title="metrics: the cost of Prometheus metrics",
        configs=configs,
        ratios=ratios,
        extras=("metrics",),
        notes=notes,
    )


def workers(ctx: Context) -> SuiteReport:
    high = ctx.options.high_concurrency
    configs = [
        Config("ORI_WORKERS=1", "oriserver", high, {**PG_ASYNC, "ORI_WORKERS": "1"}, "postgresql"),
        Config("ORI_WORKERS=2", "oriserver", high, {**PG_ASYNC, "ORI_WORKERS": "2"}, "postgresql"),
    ]
    ratios = [
        Ratio(
            "2 workers / 1 worker (for information)",
            configs[1].key,
            configs[0].key,
            check=two_processes,
        )
    ]
    notes = [
        "Recording on (PostgreSQL, async); 'recorded/call' as in the recording suite. 'server "
        "processes' counts the server's process tree during the measured window; server CPU is "
        "summed over it. " + ORISERVER_NOTE
    ]
    return server_suite(
        ctx,
        name="workers",
        title="workers: one server process or two",
        configs=configs,
        ratios=ratios,
        extras=("procs", "db_cpu", "stored"),
        notes=notes,
    )


# Run in this order by --suite all; a suite that is not a server comparison (store) builds
# its SuiteReport rows itself.
SUITES: dict[str, Suite] = {
    "store": Suite(
        "appends through the production path (shipper, event host) against a plain COPY",
        store_suite,
    ),
    "rpc": Suite("oriserver vs plain thread-pool and asyncio grpcio servers", rpc),
    "recording": Suite("recording off vs on (SQLite, PostgreSQL async and sync)", recording),
    "metrics": Suite("metrics off vs on", metrics),
    "workers": Suite("ORI_WORKERS=1 vs 2, recording into PostgreSQL", workers),
}
