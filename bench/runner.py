"""Runs server configurations side by side, interleaved round by round, each on a fresh server."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from harness import h2load
from harness.event_table import postgres_rows, sqlite_rows
from harness.load import LoadFailed, LoadProcesses, LoadResult, LoadSpec
from harness.metrics import sample_count
from harness.postgres import Postgres
from harness.procs import machine_busy_cpu, tree_cpu
from harness.servers import ServerFailed, free_port, start_server
from oriserver.config.database import DatabaseUrl


@dataclass(frozen=True)
class Options:
    """How long and how hard every measurement runs; the same for every configuration."""

    duration_s: float = 10.0
    warmup_s: float = 2.0
    rounds: int = 3
    concurrency: tuple[int, ...] = (1, 16)
    connections: int = 4
    load_procs: int = 1
    mix: str = "both"
    quick: bool = False
    generator: str = "h2load"  # or "python": see bench/cli.py
    pin: bool = True  # server on CPU 0, load on CPU 1 (machines with 2 cores or more)
    slices: int = 5  # h2load rows: each round's window in this many slices, setups in turn

    @property
    def high_concurrency(self) -> int:
        return max(self.concurrency)


@dataclass(frozen=True)
class Config:
    """One server setup under one load. database: None, "sqlite" or "postgresql"."""

    label: str
    server: str
    concurrency: int
    env: Mapping[str, str] = field(default_factory=dict)
    database: str | None = None
    metrics: bool = False
    latency: bool = False  # measured by the Python generator, which times every call

    @property
    def generator_name(self) -> str:
        return "python" if self.latency else "h2load"

    @property
    def key(self) -> str:
        """Unique within a suite: the same setup appears at several concurrencies."""
        return f"{self.label}, concurrency {self.concurrency}"


@dataclass
class Run:
    """One configuration in one round: measured, or failed with the server's last words."""

    label: str
    round: int
    load: LoadResult | None = None
    server_cpu_s: float = 0.0  # the server's process tree
    serving_cpu_s: float = 0.0  # the serving process alone (no event host, no workers)
    server_procs: int = 0
    db_cpu_s: float | None = None
    other_cpu_s: float = 0.0  # everything else on the machine during the window
    rows: dict[str, int] | None = None
    metrics_samples: int | None = None
    server_env: dict[str, str] = field(default_factory=dict)
    failure: str | None = None
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failure is None and self.load is not None

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "round": self.round,
            "load": self.load.summary() if self.load else None,
            "server_cpu_s": round(self.server_cpu_s, 3),
            "serving_cpu_s": round(self.serving_cpu_s, 3),
            "server_processes": self.server_procs,
            "db_cpu_s": None if self.db_cpu_s is None else round(self.db_cpu_s, 3),
            "other_cpu_s": round(self.other_cpu_s, 3),
            "rows": self.rows,
            "metrics_samples": self.metrics_samples,
            "server_env": self.server_env,
            "failure": self.failure,
            "log_tail": self.log_tail,
        }


class Context:
    """What every suite shares: options, a scratch directory, PostgreSQL when first needed."""

    def __init__(self, options: Options, environ: Mapping[str, str]) -> None:
        self.options = options
        self.environ = environ
        self.workdir = Path(tempfile.mkdtemp(prefix="oribench-"))
        self._postgres: Postgres | None = None

    def postgres(self) -> Postgres:
        if self._postgres is None:
            self._postgres = Postgres.start(self.environ)
        return self._postgres

    @property
    def postgres_source(self) -> str | None:
        pg = self._postgres
        return None if pg is None else f"PostgreSQL {pg.version}, {pg.source}"

    def close(self) -> None:
        try:
            if self._postgres is not None:
                self._postgres.close()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _redacted(url: str) -> str:
    try:
        return DatabaseUrl.parse(url).redacted()
    except ValueError:
        return "(unparsable)"


def _sleep_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.monotonic()))


def _cpu(pid: int | None) -> float:
    return 0.0 if pid is None else tree_cpu(pid)[0]


SERVER_CPUS, LOAD_CPUS = "0", "1"
# oriserver as a container would run it, minus what a benchmark must control.
ORISERVER_BASE = {
    "ORI_LOG_RPCS": "true",
    "ORI_INSTANCE_ID": "bench",
    "ORI_SHUTDOWN_GRACE_SECONDS": "2",
    "ORI_EVENTS_SHUTDOWN_FLUSH_SECONDS": "10",
}


def pinned(ctx: Context) -> bool:
    return ctx.options.pin and (os.cpu_count() or 1) >= 2


def _process_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _measure_h2load(ctx: Context, config: Config, port: int, server_pid: int, run: Run) -> None:
    """h2load warms up, then measures the whole window as one slice (``_h2load_window``)."""
    o = ctx.options
    warm = Run(run.label, run.round)
    if o.warmup_s > 0:
        _h2load_window(ctx, config, port, server_pid, o.warmup_s, warm, settle_s=0.0)
    _h2load_window(ctx, config, port, server_pid, o.duration_s, run, settle_s=0.0)
    if run.load is not None and warm.load is not None:
        warm_calls = warm.load.calls_including_warmup
        run.load = replace(
            run.load, calls_including_warmup=run.load.calls_including_warmup + warm_calls
        )


def _measure(ctx: Context, config: Config, target: str, server_pid: int, run: Run) -> None:
    """Warm-up then the measured window; server CPU read exactly at the window's edges."""
    o = ctx.options
    spec = LoadSpec(target, config.concurrency, o.connections, o.duration_s, o.warmup_s, o.mix)
    db_pid = ctx.postgres().pid if config.database == "postgresql" else None
    with LoadProcesses(spec, o.load_procs) as load:
        window = load.go()
        _sleep_until(window.measure)
        busy_before = machine_busy_cpu()
        server_before, db_before = tree_cpu(server_pid), _cpu(db_pid)
        serving_before = _process_cpu(server_pid)
        _sleep_until(window.end)
        serving_after = _process_cpu(server_pid)
        server_after, db_after = tree_cpu(server_pid), _cpu(db_pid)
        busy_after = machine_busy_cpu()
        run.load = load.collect()
    run.server_cpu_s = server_after[0] - server_before[0]
    run.serving_cpu_s = serving_after - serving_before
    run.server_procs = max(server_before[1], server_after[1])
    run.db_cpu_s = None if db_pid is None else db_after - db_before
    ours = run.server_cpu_s + (run.db_cpu_s or 0.0) + run.load.client_cpu_s
    run.other_cpu_s = max(0.0, busy_after - busy_before - ours)


def _serve_and_measure(
    ctx: Context, config: Config, env: dict[str, str], tag: str, run: Run
) -> None:
    """Start the server, measure it, stop it; the log tail is kept when anything went wrong."""
    cpus = SERVER_CPUS if pinned(ctx) else None
    if config.server == "oriserver":
        env = {**ORISERVER_BASE, **env}
    server = start_server(
        ctx.workdir, env, kind=config.server, args=("serve",), base_env=ctx.environ,
        cpus=cpus, label=tag, timeout_s=30,
    )  # fmt: skip
    try:
        if config.latency or ctx.options.generator == "python":
            _measure(ctx, config, server.target, server.process.pid, run)
        else:
            _measure_h2load(ctx, config, server.port, server.process.pid, run)
        if config.metrics:  # after the window: proof that metrics were really on
            run.metrics_samples = sample_count(int(env["ORI_METRICS_PORT"]))
    except LoadFailed as error:
        run.failure = f"load generator: {error}"
    finally:
        server.stop(grace_s=15)
        if run.failure or (run.load and run.load.errors):
            run.log_tail = server.log_tail()


def _prepare(ctx: Context, config: Config, tag: str) -> tuple[dict[str, str], str | None, Path]:
    """The run's environment, with a fresh database: (env, PostgreSQL URL or None, SQLite path)."""
    env = dict(config.env)
    sqlite_path = ctx.workdir / f"{tag}.db"
    env["ORI_DATABASE_URL"] = f"sqlite:///{sqlite_path}"
    env["ORI_DB_AUTO_MIGRATE"] = "true"
    if config.metrics:
        env["ORI_METRICS_PORT"] = str(free_port())
    pg_url: str | None = None
    if config.database == "postgresql":
        pg_url = env["ORI_DATABASE_URL"] = ctx.postgres().create_database()
    return env, pg_url, sqlite_path


def _count_and_drop(
    ctx: Context, config: Config, run: Run, pg_url: str | None, sqlite: Path
) -> None:
    try:
        if pg_url is not None and run.failure is None:
            run.rows = postgres_rows(pg_url)
        elif config.database == "sqlite" and run.failure is None:
            run.rows = sqlite_rows(sqlite)
    finally:
        if pg_url is not None:
            try:
                ctx.postgres().drop_database(pg_url)
            except Exception as error:
                print(f"could not drop the run's database: {error}", file=sys.stderr)


def run_one(ctx: Context, config: Config, round_no: int, tag: str) -> Run:
    """Fresh server (and fresh database), wait for SERVING, warm up, measure, stop."""
    run = Run(config.key, round_no)
    pg_url: str | None = None
    sqlite_path = ctx.workdir / f"{tag}.db"
    try:
        env, pg_url, sqlite_path = _prepare(ctx, config, tag)
        if config.server == "oriserver":
            run.server_env = {**env, "ORI_DATABASE_URL": _redacted(env["ORI_DATABASE_URL"])}
        _serve_and_measure(ctx, config, env, tag, run)
    except ServerFailed as error:
        run.failure, run.log_tail = f"server did not start: {error}", error.log_tail
    except Exception as error:
        run.failure = f"{type(error).__name__}: {error}"
    finally:
        _count_and_drop(ctx, config, run, pg_url, sqlite_path)
    return run


def sliced(ctx: Context, config: Config) -> bool:
    """Measured in slices beside the suite's other servers (h2load rows)."""
    return not config.latency and ctx.options.generator != "python" and ctx.options.slices > 1


SETTLE_S = 0.3  # after a slice: the event host finishes the slice's last flush before CPU is read


@dataclass
class _Live:
    config: Config
    server: Any
    env: dict[str, str]
    pg_url: str | None
    sqlite: Path
    runs: list[Run]
    warm_calls: int = 0


def _slice(ctx: Context, live: _Live, seconds: float, run: Run) -> None:
    """One slice of load on one server; its CPU and calls are added to ``run``."""
    server = live.server
    _h2load_window(ctx, live.config, server.port, server.process.pid, seconds, run, SETTLE_S)


def _h2load_window(  # noqa: PLR0917 - one window's every input, from two callers
    ctx: Context, config: Config, port: int, pid: int, seconds: float, run: Run, settle_s: float
) -> None:
    """h2load on one server for ``seconds``; the CPU and calls of the window are added to
    ``run``. ``settle_s``: time for the event host to finish the window's last flush."""
    o = ctx.options
    connections = min(o.connections, config.concurrency)
    kwargs = {
        "connections": connections,
        "streams": max(1, config.concurrency // connections),
        "methods": h2load.methods(o.mix),
        "cpus": LOAD_CPUS if pinned(ctx) else None,
    }
    db_pid = ctx.postgres().pid if config.database == "postgresql" else None
    busy_before = machine_busy_cpu()
    tree_before, db_before, serving_before = tree_cpu(pid), _cpu(db_pid), _process_cpu(pid)
    result = h2load.run(port, duration_s=seconds, **kwargs)
    if settle_s:
        time.sleep(settle_s)
    tree_after, db_after, serving_after = tree_cpu(pid), _cpu(db_pid), _process_cpu(pid)
    busy_after = machine_busy_cpu()
    errors = {"stream errors": result.failed} if result.failed else {}
    if not result.right:
        errors["wrong or missing replies"] = 1
    load = run.load or LoadResult(window_s=0.0, ok=0, errors={}, client_cpu_s=0.0)
    merged = dict(load.errors)
    for key, value in errors.items():
        merged[key] = merged.get(key, 0) + value
    run.load = LoadResult(
        window_s=load.window_s + result.seconds,
        ok=load.ok + (result.succeeded if not errors else 0),
        errors=merged,
        client_cpu_s=load.client_cpu_s + result.cpu_s,
        calls_including_warmup=load.calls_including_warmup + result.succeeded,
    )
    if errors and run.failure is None:
        run.failure = f"h2load: {errors} in {result.succeeded} responses"
    server_cpu = tree_after[0] - tree_before[0]
    db_cpu = None if db_pid is None else db_after - db_before
    run.server_cpu_s += server_cpu
    run.serving_cpu_s += serving_after - serving_before
    run.server_procs = max(run.server_procs, tree_before[1], tree_after[1])
    if db_cpu is not None:
        run.db_cpu_s = (run.db_cpu_s or 0.0) + db_cpu
    ours = server_cpu + (db_cpu or 0.0) + result.cpu_s
    run.other_cpu_s += max(0.0, busy_after - busy_before - ours)


def _start_all(
    ctx: Context,
    suite: str,
    configs: Sequence[Config],
    runs: dict[str, list[Run]],
    lives: list[_Live],
) -> None:
    """A server (and fresh database) for every setup, all at once; those that cannot start
    get their failure in every round."""
    o = ctx.options
    cpus = SERVER_CPUS if pinned(ctx) else None
    for index, config in enumerate(configs):
        tag = f"{suite}-sliced-{index}"
        env, pg_url, sqlite = _prepare(ctx, config, tag)
        full = {**ORISERVER_BASE, **env} if config.server == "oriserver" else env
        runs_of = [Run(config.key, r) for r in range(1, o.rounds + 1)]
        if config.server == "oriserver":
            shown = {**env, "ORI_DATABASE_URL": _redacted(env["ORI_DATABASE_URL"])}
            for run in runs_of:
                run.server_env = shown
        runs[config.key].extend(runs_of)
        try:
            server = start_server(
                ctx.workdir, full, kind=config.server, args=("serve",),
                base_env=ctx.environ, cpus=cpus, label=tag, timeout_s=30,
            )  # fmt: skip
        except ServerFailed as error:
            for run in runs_of:
                run.failure, run.log_tail = f"server did not start: {error}", error.log_tail
            _count_and_drop(ctx, config, runs_of[0], pg_url, sqlite)
            continue
        lives.append(_Live(config, server, env, pg_url, sqlite, runs_of))


def _stop_all(ctx: Context, lives: Sequence[_Live]) -> None:
    for live in lives:
        live.server.stop(grace_s=15)
        if any(run.failure for run in live.runs):
            for run in live.runs:
                run.log_tail = live.server.log_tail()
        rows_run = live.runs[-1]
        _count_and_drop(ctx, live.config, rows_run, live.pg_url, live.sqlite)
        # The rows are the server's whole life: every round's calls and the warm-up's.
        answered = live.warm_calls + sum(r.load.calls_including_warmup for r in live.runs if r.load)
        for run in live.runs:
            run.rows = rows_run.rows
            if run.load is not None:
                run.load = replace(run.load, calls_including_warmup=answered)


def _run_sliced(
    ctx: Context, suite: str, configs: Sequence[Config], runs: dict[str, list[Run]]
) -> None:
    """Every server of the suite runs at once (idle but for its slice); h2load visits them in
    turn, ``slices`` times per round, so that each round's figures for every setup come from
    the same seconds of the machine's life. On a shared machine whose speed drifts by 10-20 %
    from one minute to the next, that is what keeps the per-round ratios comparable."""
    o = ctx.options
    lives: list[_Live] = []
    try:
        _start_all(ctx, suite, configs, runs, lives)
        print(f"[{suite}] {len(lives)} servers up; warming up", file=sys.stderr)
        for live in lives:
            warm = Run(live.config.key, 0)
            _slice(ctx, live, o.warmup_s, warm)
            live.warm_calls = warm.load.calls_including_warmup if warm.load else 0
        seconds = o.duration_s / o.slices
        for round_no in range(1, o.rounds + 1):
            print(f"[{suite}] round {round_no}/{o.rounds}: {o.slices} slices of {seconds:g} s "
                  f"for each of {len(lives)} setups", file=sys.stderr)  # fmt: skip
            for _ in range(o.slices):
                for live in lives:
                    _slice(ctx, live, seconds, live.runs[round_no - 1])
        for live in lives:
            if live.config.metrics:
                samples = sample_count(int(live.env["ORI_METRICS_PORT"]))
                for run in live.runs:
                    run.metrics_samples = samples
    finally:
        _stop_all(ctx, lives)


def run_interleaved(ctx: Context, suite: str, configs: Sequence[Config]) -> dict[str, list[Run]]:
    """h2load rows: all servers at once, measured in interleaved slices (``_run_sliced``).
    Other rows (the Python generator's): A B C A B C ... for the configured rounds, each on
    a fresh server; a setup that cannot start is not retried."""
    runs: dict[str, list[Run]] = {config.key: [] for config in configs}
    together = [config for config in configs if sliced(ctx, config)]
    if together:
        _run_sliced(ctx, suite, together, runs)
    alone = [config for config in configs if not sliced(ctx, config)]
    gave_up: set[str] = set()
    rounds = ctx.options.rounds
    for round_no in range(1, rounds + 1):
        for index, config in enumerate(alone):
            if config.key in gave_up:
                continue
            print(f"[{suite}] round {round_no}/{rounds}: {config.key}", file=sys.stderr)
            run = run_one(ctx, config, round_no, f"{suite}-{index}-r{round_no}")
            runs[config.key].append(run)
            if run.failure:
                print(f"[{suite}]   failed: {run.failure}", file=sys.stderr)
                if run.failure.startswith("server did not start"):
                    gave_up.add(config.key)
    return runs
