"""The scenarios: each starts real servers on loopback, applies one fault under load, measures,
and returns a Result whose checks decide pass or fail.

The script (``python -m bench.reliability``) and the test suite (``tests/reliability``) call
these same functions; only the Options (durations, rate, burst size) differ.

Every load goes to 127.0.0.1, every phase is bounded by an Option or a timeout, and every
server, proxy, load thread and database is released in ``finally`` (``with``) blocks.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from bench.reliability.load import ANSWERED, Load, call_once, channel
from bench.reliability.probes import (
    EVENTS_SERVICE,
    HealthWatch,
    Resources,
    Server,
    events_by_instance,
    health_status,
    kill,
    resources,
    running_server,
    start_server,
    stored_outcome_ids,
    wait_stored,
)
from bench.reliability.verdict import Result, check_events
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc
from oriserver.config.database import DatabaseUrl
from tests.support.event_table import StoredCalls, stored_calls
from tests.support.faultproxy import fault_proxy
from tests.support.postgres import proxied, proxy_target

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


FULL = Options()
QUICK = Options(soak_s=3.0, warmup_s=1.5, before_s=1.0, fault_s=3.0, after_s=0.5)


@dataclass
class Context:
    options: Options
    workdir: Path
    database: Callable[[], AbstractContextManager[str]]  # an empty, migrated PostgreSQL database
    say: Callable[[str], None] = lambda _line: None  # progress, for a person watching


def _env(database_url: str, durability: str = "async", **extra: str) -> dict[str, str]:
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


def _load(ctx: Context, server: Server) -> Load:
    o = ctx.options
    return Load(server.target, clients=o.clients, rate=o.rate)


def _new_result(name: str, load: Load, since: float, until: float, rate: float) -> Result:
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


def _stored(database_url: str) -> StoredCalls:
    return stored_calls(DatabaseUrl.parse(database_url))


def _graceful_stop(result: Result, server: Server, what: str = "SIGTERM after the load") -> float:
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


def _describe(r: Resources) -> str:
    return f"RSS {r.rss_bytes / MB:.1f} MB, {r.fds} FDs, {r.processes} process(es)"


# --- 1. steady load ----------------------------------------------------------------------


def steady(ctx: Context) -> Result:
    """Steady paced load on PostgreSQL (async); RSS and FDs sampled after warm-up and at the end."""
    o = ctx.options
    with ctx.database() as url, running_server(ctx.workdir, _env(url)) as server:
        with _load(ctx, server) as load:
            ctx.say(f"warm-up {o.warmup_s:g} s, then {o.soak_s:g} s measured")
            time.sleep(o.warmup_s)
            start = time.monotonic()
            first = resources(server.pid)
            peak_rss = first.rss_bytes
            while time.monotonic() < start + o.soak_s:
                time.sleep(min(1.0, max(0.0, start + o.soak_s - time.monotonic())))
                last = resources(server.pid)
                peak_rss = max(peak_rss, last.rss_bytes)
            end = time.monotonic()
        result = _new_result("steady", load, start, end, o.rate)
        _graceful_stop(result, server)
        check_events(
            result, _stored(url), acknowledged=load.acknowledged(), attempted=load.attempted()
        )
    growth = last.rss_bytes / first.rss_bytes - 1
    result.check("clients saw no errors", not result.errors, _codes(result.errors))
    result.check(
        f"RSS growth < {o.rss_growth_max:.0%}",
        growth < o.rss_growth_max,
        f"{first.rss_bytes / MB:.1f} -> {last.rss_bytes / MB:.1f} MB ({growth:+.1%}), "
        f"peak {peak_rss / MB:.1f} MB over {end - start:.0f} s",
    )
    result.check(
        f"FD growth <= {o.fd_growth_max}",
        last.fds - first.fds <= o.fd_growth_max,
        f"{first.fds} -> {last.fds}",
    )
    result.notes.append(f"after warm-up: {_describe(first)}; at the end: {_describe(last)}")
    return result


# --- 2. the database cut ------------------------------------------------------------------


def db_cut_async(ctx: Context) -> Result:
    return _db_fault(ctx, "db-cut-async", "async", "cut")


def db_cut_sync(ctx: Context) -> Result:
    return _db_fault(ctx, "db-cut-sync", "sync", "cut")


# --- 3. the database slowed down ---------------------------------------------------------


def db_latency(ctx: Context) -> Result:
    return _db_fault(ctx, "db-latency", "async", "delay")


def _db_fault(ctx: Context, name: str, durability: str, fault: str) -> Result:
    """PostgreSQL reached through a fault proxy; the fault lasts fault_s in the middle of the load."""
    o = ctx.options
    with ctx.database() as url, fault_proxy(proxy_target(url)) as proxy:
        env = _env(
            proxied(url, proxy.port), durability, ORI_DB_TIMEOUT_SECONDS=f"{o.db_timeout_s:g}"
        )
        with running_server(ctx.workdir, env) as server, HealthWatch(server.target) as health:
            with _load(ctx, server) as load:
                time.sleep(o.before_s)
                fault_start = time.monotonic()
                if fault == "cut":
                    proxy.cut()
                else:
                    proxy.delay(o.latency_s)
                ctx.say(f"database {'cut' if fault == 'cut' else 'slowed'} for {o.fault_s:g} s")
                time.sleep(o.fault_s)
                proxy.heal()
                healed = time.monotonic()
                ctx.say("database back; measuring recovery")
                result = Result(name, 0.0, o.rate or None, Counter(), 0, 0, "-")
                waiting = load.acknowledged(until=healed) - stored_outcome_ids(url)
                result.notes.append(
                    f"when the fault ended, {len(waiting)} acknowledged calls were not stored yet"
                )
                if durability == "async":
                    # Everything acknowledged so far was answered from memory: when is it stored?
                    written = wait_stored(
                        url, load.acknowledged(until=healed), o.recovery_timeout_s
                    )
                    _recovered(result, "all buffered events written", healed, written)
                else:
                    first_ok = _wait_first_ok(load, healed, o.recovery_timeout_s)
                    _recovered(result, "first successful call", healed, first_ok)
                events_up = health.wait_for(EVENTS_SERVICE, "SERVING", healed, o.recovery_timeout_s)
                if events_up is not None:
                    result.recovery += f"; events SERVING {events_up - healed:.2f} s"
                time.sleep(o.after_s)
                end = time.monotonic()
            result.held_rps = load.held_rps(load.started, end)
            result.errors, result.error_details = load.errors(), load.details
            overall = health.statuses("", fault_start)
            noticed = health.first(EVENTS_SERVICE, "NOT_SERVING", fault_start, healed)
            _graceful_stop(result, server)
            check_events(
                result, _stored(url), acknowledged=load.acknowledged(), attempted=load.attempted()
            )
    during = (fault_start, healed)
    result.notes.append(
        f"rps held before / during / after the fault: {load.held_rps(load.started, during[0]):.0f}"
        f" / {load.held_rps(*during):.0f} / {load.held_rps(healed, end):.0f}"
    )
    result.check(
        "overall health stayed SERVING", overall == {"SERVING"}, f"seen: {sorted(overall)}"
    )
    result.check(
        "events service SERVING again",
        events_up is not None,
        f"{events_up - healed:.2f} s after the fault ended" if events_up else "never",
    )
    if fault == "cut":
        result.check(
            "the outage was noticed (events service NOT_SERVING)",
            noticed is not None,
            f"{noticed - fault_start:.2f} s after the cut" if noticed else "never during the cut",
        )
    elif noticed is not None:
        result.notes.append(
            f"the events service reported NOT_SERVING {noticed - fault_start:.2f} s into the slowdown"
        )
    if durability == "async":
        result.check("clients saw no errors", not result.errors, _codes(result.errors))
    else:
        late = load.errors(since=healed + (result.recovery_s or 0) + 1.0)
        result.check(
            "errors are UNAVAILABLE, and only until recovery",
            set(result.errors) <= {"UNAVAILABLE"} and not late,
            f"{_codes(result.errors)}; after recovery: {_codes(late)}",
        )
        result.check(
            "calls refused during the outage",
            load.errors(*during)["UNAVAILABLE"] > 0,
            f"{load.errors(*during)['UNAVAILABLE']} UNAVAILABLE while cut",
        )
    return result


def _wait_first_ok(load: Load, since: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while (found := load.first_ok_after(since)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def _recovered(result: Result, what: str, fault_end: float, when: float | None) -> None:
    if when is None:
        result.recovery = f"not within the timeout ({what})"
    else:
        result.recovery_s = when - fault_end
        result.recovery = f"{result.recovery_s:.2f} s to {what}"
    result.check("recovered on its own", when is not None, result.recovery)


def _codes(codes: Counter[str]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(codes.items())) or "none"


# --- 4. SIGTERM under load ----------------------------------------------------------------


def sigterm(ctx: Context) -> Result:
    """SIGTERM under load (async); then a new process on the same port, as an orchestrator would."""
    o = ctx.options
    with ctx.database() as url, contextlib.ExitStack() as stack:
        env = _env(url)
        first = start_server(ctx.workdir, env)
        stack.callback(first.stop)
        with _load(ctx, first) as load:
            time.sleep(o.before_s)
            result = Result("sigterm", 0.0, o.rate or None, Counter(), 0, 0, "-")
            signalled = time.monotonic()
            ctx.say(f"SIGTERM sent to pid {first.pid}")
            drain = _graceful_stop(result, first, "SIGTERM under load")
            exited = time.monotonic()
            second = start_server(ctx.workdir, env, port=first.port)
            stack.callback(second.stop)
            serving = time.monotonic()
            first_ok = _wait_first_ok(load, serving, o.recovery_timeout_s)
            time.sleep(o.after_s)
            end = time.monotonic()
        result.held_rps = load.held_rps(load.started, signalled)
        result.errors, result.error_details = load.errors(), load.details
        result.recovery_s = serving - exited
        result.recovery = (
            f"{result.recovery_s:.2f} s from exit to SERVING (new process); drain {drain:.2f} s"
        )
        result.check(
            "clients answered again after the restart",
            first_ok is not None,
            f"first successful call {first_ok - serving:.2f} s after SERVING" if first_ok else "",
        )
        late = load.errors(since=serving + 1.0, until=end)
        result.check(
            "errors are UNAVAILABLE (or CANCELLED, see below), only while no server was up",
            set(result.errors) <= {"UNAVAILABLE", "CANCELLED"} and not late,
            f"{_codes(result.errors)}; 1 s after SERVING: {_codes(late)}",
        )
        _graceful_stop(result, second, "SIGTERM of the restarted server")
        stored = _stored(url)
        check_events(result, stored, acknowledged=load.acknowledged(), attempted=load.attempted())
    # grpc core answers CANCELLED, not UNAVAILABLE, to calls that had arrived but were not yet
    # handed to a handler when the server stopped (grpc/grpc#41785): never ran, never recorded.
    cancelled = {c.id for c in load.calls() if c.code == "CANCELLED"}
    if cancelled:
        ran = cancelled & (set(stored.requested) | set(stored.outcomes))
        result.check(
            "CANCELLED calls never ran (no events)",
            not ran,
            f"{len(cancelled)} CANCELLED, {len(ran)} of them with events",
        )
        when = sorted(c.ended - signalled for c in load.calls() if c.id in cancelled)
        result.notes.append(
            f"{len(cancelled)} calls got CANCELLED {when[0]:.2f}-{when[-1]:.2f} s after SIGTERM: "
            "grpc core cancels calls not yet handed to a handler when the server stops "
            "(grpc/grpc#41785); clients that retry only UNAVAILABLE will not retry them"
        )
    result.notes.append(
        f"SIGTERM to exit {exited - signalled:.2f} s; restart to SERVING {serving - exited:.2f} s"
    )
    return result


# --- 5. SIGKILL of one worker ---------------------------------------------------------------


def sigkill_worker(ctx: Context) -> Result:
    return _sigkill_worker(ctx, "sigkill-worker", "async")


def sigkill_worker_sync(ctx: Context) -> Result:
    return _sigkill_worker(ctx, "sigkill-worker-sync", "sync")


def _sigkill_worker(ctx: Context, name: str, durability: str) -> Result:
    """ORI_WORKERS=2: SIGKILL one worker under load; the supervisor starts a new one."""
    o = ctx.options
    extra = {"ORI_WORKERS": "2", "ORI_EVENTS_FLUSH_INTERVAL_MS": "50"}
    with (
        ctx.database() as url,
        running_server(ctx.workdir, _env(url, durability, **extra)) as server,
    ):
        _wait(lambda: len(server.messages("serving")) >= 2, o.recovery_timeout_s)
        with _load(ctx, server) as load:
            time.sleep(o.before_s)
            victim = min(server.workers(), key=lambda p: p.pid)
            killed = time.monotonic()
            kill(victim.pid)
            ctx.say(f"SIGKILL sent to worker pid {victim.pid}")
            # A new worker logs "serving" once it listens and reports SERVING.
            replaced = _wait(lambda: len(server.messages("serving")) >= 3, o.recovery_timeout_s)
            time.sleep(o.after_s)
            end = time.monotonic()
        result = _new_result(name, load, load.started, end, o.rate)
        _recovered(result, "the new worker SERVING", killed, replaced)
        exits = [
            r for r in server.messages("worker exited unexpectedly") if r.get("pid") == victim.pid
        ]
        result.check(
            "the supervisor saw the crash and replaced the worker",
            bool(exits) and len(server.workers()) == 2,
            f"{len(server.workers())} workers after the restart",
        )
        _graceful_stop(result, server)
        # What async mode may lose: calls the killed worker acknowledged but had not flushed.
        # Clients cannot tell which worker answered, so the bound is in time: only calls
        # acknowledged within tail_window_s before the kill (or just after) may be missing.
        # Sync mode may lose nothing.
        tail = None
        if durability == "async":
            tail = load.acknowledged(since=killed - o.tail_window_s, until=killed + 0.5)
        stored = _stored(url)
        check_events(
            result,
            stored,
            acknowledged=load.acknowledged(),
            attempted=load.attempted(),
            may_miss=tail,
        )
        missing = load.acknowledged() - stored.answered
        late = load.errors(since=killed + 1.0)
        result.notes.append(f"events per worker: {events_by_instance(url)}")
    if missing:
        ends = sorted(c.ended - killed for c in load.calls() if c.id in missing)
        result.notes.append(
            f"lost with the killed worker: {len(missing)} calls, acknowledged from "
            f"{_relative(ends[0])} to {_relative(ends[-1])} the kill (window {o.tail_window_s:g} s)"
        )
    else:
        result.notes.append("no call lost with the killed worker")
    result.check(
        "errors are UNAVAILABLE, and only around the kill",
        set(result.errors) <= {"UNAVAILABLE"} and not late,
        f"{_codes(result.errors)}; 1 s after the kill: {_codes(late)}",
    )
    return result


def _relative(offset_s: float) -> str:
    return f"{abs(offset_s) * 1000:.0f} ms {'before' if offset_s < 0 else 'after'}"


def _wait(condition: Callable[[], bool], timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    return time.monotonic()


# --- 6. a burst of new connections ------------------------------------------------------------


def connection_burst(ctx: Context) -> Result:
    """``burst`` new connections, one call each, ``burst_concurrency`` at a time."""
    o = ctx.options
    with ctx.database() as url, running_server(ctx.workdir, _env(url)) as server:
        time.sleep(0.5)
        before = resources(server.pid)
        outcomes: dict[int, tuple[str, float]] = {}
        details: dict[str, str] = {}

        def one(call_id: int) -> None:
            with channel(server.target) as chan:
                code = call_once(pb_grpc.MathHelperStub(chan), call_id, 10.0, details)
            outcomes[call_id] = (code, time.monotonic())

        peak = before
        start = time.monotonic()
        pool = ThreadPoolExecutor(o.burst_concurrency, thread_name_prefix="burst")
        try:
            futures = [pool.submit(one, i) for i in range(1, o.burst + 1)]
            while not all(f.done() for f in futures):
                time.sleep(0.1)
                peak = max(peak, resources(server.pid), key=lambda r: r.fds)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on error: the queued calls never start
        end = time.monotonic()
        for future in futures:
            future.result()
        settled = _wait(
            lambda: resources(server.pid).fds <= before.fds + o.fd_growth_max,
            o.recovery_timeout_s,
        )
        after = resources(server.pid)
        health = health_status(server.target)
        codes = Counter(code for code, _ in outcomes.values())
        acknowledged = {i for i, (code, _) in outcomes.items() if code in ANSWERED}
        result = Result(
            "connection-burst",
            held_rps=len(acknowledged) / (end - start),
            offered_rps=None,
            errors=Counter({c: n for c, n in codes.items() if c not in ANSWERED}),
            events_expected=0,
            events_stored=0,
            recovery="-",
            error_details=details,
        )
        _recovered(result, "descriptors back to the baseline", end, settled)
        _graceful_stop(result, server)
        check_events(
            result, _stored(url), acknowledged=acknowledged, attempted=set(range(1, o.burst + 1))
        )
    result.check(
        "every call of the burst answered",
        len(acknowledged) == o.burst,
        f"{len(acknowledged)} of {o.burst}; errors: {_codes(result.errors)}",
    )
    result.check("SERVING after the burst", health == "SERVING", health)
    result.notes.append(
        f"{o.burst} connections in {end - start:.2f} s ({o.burst_concurrency} at a time); "
        f"server FDs {before.fds} before, {peak.fds} at the peak, {after.fds} after"
    )
    return result


# --- the registry ------------------------------------------------------------------------------

Scenario = Callable[[Context], Result]

SCENARIOS: dict[str, tuple[Scenario, str]] = {
    "steady": (steady, "steady load, PostgreSQL async; RSS and FDs must stay flat"),
    "db-cut-async": (db_cut_async, "PostgreSQL cut (async): answered, buffered, written later"),
    "db-cut-sync": (db_cut_sync, "PostgreSQL cut (sync): UNAVAILABLE while cut, nothing lost"),
    "db-latency": (db_latency, "PostgreSQL 200 ms slower each way (async)"),
    "sigterm": (sigterm, "SIGTERM under load (async), then a new process on the same port"),
    "sigkill-worker": (sigkill_worker, "SIGKILL of one of 2 workers under load (async)"),
    "sigkill-worker-sync": (sigkill_worker_sync, "the same in sync mode: nothing may be lost"),
    "connection-burst": (connection_burst, "1,000 new connections, one call each"),
}


def run(name: str, ctx: Context) -> Result:
    """Run one scenario; an exception becomes a failed Result rather than ending the run."""
    function, _ = SCENARIOS[name]
    try:
        return function(ctx)
    except Exception as error:
        result = Result(name, 0.0, None, Counter(), 0, 0, "-")
        result.check("the scenario ran to its end", False, f"{type(error).__name__}: {error}")
        return result
