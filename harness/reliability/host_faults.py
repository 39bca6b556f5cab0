"""The event host killed or stopped, and the database stalled, under load.

- **host killed** (async and sync): the event host child gets SIGKILL ``host_kills`` times; the
  server must start a new one each time. Sync mode may lose nothing acknowledged. Async mode may
  lose nothing either unless it says so: what was in flight is written after the restart, or
  counted (``ori_events_dropped_total``) as lost; never stored twice.
- **host stopped** (sync): the host gets SIGSTOP for ``fault_s``, then SIGCONT.
- **database stalled** (sync): a proxy holds PostgreSQL's connections open and forwards nothing.

In both stalls calls must fail with UNAVAILABLE within ORI_DB_TIMEOUT_SECONDS plus
``stall_margin_s``, MathHelper's and the events service's health must turn NOT_SERVING (the
overall one stays SERVING: the process is alive), and calls must succeed again on their own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator

from harness.faultproxy import FaultProxy
from harness.load import Load
from harness.metrics import read_value
from harness.postgres import proxied
from harness.reliability.kit import (
    Context,
    codes_text,
    graceful_stop,
    new_result,
    paced_load,
    read_stored,
    recovered,
    server_env,
    wait_first_ok,
    wait_until,
)
from harness.reliability.probes import EVENTS_SERVICE, MATH_SERVICE, HealthWatch
from harness.reliability.verdict import Result, check_events
from harness.servers import ServerProcess, free_port, running_server

HOST_RESTARTED = "event host process restarted"


def host_killed_async(ctx: Context) -> Result:
    return _host_killed(ctx, "host-killed-async", "async")


def host_killed_sync(ctx: Context) -> Result:
    return _host_killed(ctx, "host-killed-sync", "sync")


APPENDED = "ori_events_appended_total"


def _dropped_events(metrics_port: int) -> float | None:
    """ori_events_dropped_total as the server reports it, or None when it cannot be read."""
    return read_value(metrics_port, "ori_events_dropped_total")


def _host_killed(ctx: Context, name: str, durability: str) -> Result:
    o = ctx.options
    metrics_port = free_port()
    extra = {"ORI_METRICS_PORT": str(metrics_port), "ORI_EVENTS_FLUSH_INTERVAL_MS": "50"}
    with (
        ctx.database() as url,
        running_server(ctx.workdir, server_env(url, durability, **extra)) as server,
        paced_load(ctx, server) as load,
    ):
        time.sleep(o.before_s)
        killed: set[int] = set()
        restart_s: list[float | None] = []
        for kill_no in range(1, o.host_kills + 1):
            host = server.event_host(o.recovery_timeout_s)
            appended = read_value(metrics_port, APPENDED) or 0.0
            killed.add(host.pid)
            killed_at = time.monotonic()
            host.kill()

            # The server starts a new host at its next recorded call, and logs it.
            def restarted(n: int = kill_no) -> bool:
                return len(server.records(HOST_RESTARTED)) >= n

            back = wait_until(restarted, o.recovery_timeout_s)
            restart_s.append(None if back is None else back - killed_at)

            # Kill the next one only once it has committed something: a host killed while it
            # still starts up (slow on a loaded machine) would leave sync calls no host at all.
            def committed(before: float = appended) -> bool:
                return (read_value(metrics_port, APPENDED) or 0.0) > before

            wait_until(committed, o.recovery_timeout_s, every_s=0.2)  # the sampler: 1 per s
            time.sleep(o.between_kills_s)
        time.sleep(o.after_s)
        end = time.monotonic()
        last_host = server.event_host(o.recovery_timeout_s)
        dropped = _dropped_events(metrics_port)
        load.stop()
        result = new_result(name, load, load.started, end, o.rate)
        restarts = len(server.records(HOST_RESTARTED))
        graceful_stop(result, server)
        stored = read_stored(url)
    result.check(
        "a new event host after every kill",
        restarts >= o.host_kills and last_host.pid not in killed,
        f"{o.host_kills} kills, {restarts} restarts logged",
    )
    worst = None if None in restart_s else max(s for s in restart_s if s is not None)
    recovered(result, "the slowest restart logged", 0.0, worst)
    missing = load.acknowledged() - stored.answered
    if durability == "async":
        counted = (dropped or 0) / 2  # two events per call
        result.check(
            "in-flight calls written after the restart, or counted as lost",
            len(missing) <= counted,
            f"{len(missing)} acknowledged calls not stored; ori_events_dropped_total {dropped}",
        )
        check_events(
            result, stored, acknowledged=load.acknowledged(), attempted=load.attempted(),
            may_miss=missing if len(missing) <= counted else None,
        )  # fmt: skip
    else:
        check_events(result, stored, acknowledged=load.acknowledged(), attempted=load.attempted())
    result.check(
        "errors, if any, are UNAVAILABLE",
        set(result.errors) <= {"UNAVAILABLE"},
        codes_text(result.errors),
    )
    result.notes.append(
        "kill to restart logged: "
        + ", ".join("never" if s is None else f"{s:.2f} s" for s in restart_s)
    )
    return result


def host_stopped(ctx: Context) -> Result:
    """SIGSTOP of the event host in sync mode, SIGCONT after fault_s."""

    @contextlib.contextmanager
    def stop_host(server: ServerProcess, _: FaultProxy | None) -> Iterator[None]:
        host = server.event_host(ctx.options.recovery_timeout_s)
        os.kill(host.pid, signal.SIGSTOP)
        ctx.say(f"SIGSTOP sent to event host pid {host.pid}")
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have been replaced and reaped
                os.kill(host.pid, signal.SIGCONT)

    return _stall(ctx, "host-stopped", stop_host, proxy=False)


def db_stalled(ctx: Context) -> Result:
    """A proxy that holds PostgreSQL's connections open and forwards nothing (sync mode)."""

    @contextlib.contextmanager
    def blackhole(_: ServerProcess, proxy: FaultProxy | None) -> Iterator[None]:
        assert proxy is not None
        proxy.blackhole()
        ctx.say("database stalled: connections open, nothing forwarded")
        try:
            yield
        finally:
            proxy.heal()

    return _stall(ctx, "db-stalled", blackhole, proxy=True)


Stall = Callable[[ServerProcess, FaultProxy | None], contextlib.AbstractContextManager[None]]


def _stall(ctx: Context, name: str, stall: Stall, *, proxy: bool) -> Result:
    o = ctx.options
    limit = o.db_timeout_s + o.stall_margin_s
    with ctx.database() as url, contextlib.ExitStack() as stack:
        fault_proxy = stack.enter_context(FaultProxy.for_url(url)) if proxy else None
        reach = proxied(url, fault_proxy.port) if fault_proxy is not None else url
        env = server_env(reach, "sync", ORI_DB_TIMEOUT_SECONDS=f"{o.db_timeout_s:g}")
        server = stack.enter_context(running_server(ctx.workdir, env))
        services = ("", MATH_SERVICE, EVENTS_SERVICE)
        health = stack.enter_context(HealthWatch(server.target, services=services))
        load = stack.enter_context(Load(server.target, clients=o.clients, rate=o.rate))
        time.sleep(o.before_s)
        if wait_first_ok(load, load.started, o.recovery_timeout_s) is None:
            raise RuntimeError("no call succeeded before the fault")
        start = time.monotonic()
        with stall(server, fault_proxy):
            time.sleep(o.fault_s)
        healed = time.monotonic()
        first_ok = wait_first_ok(load, healed, o.recovery_timeout_s)
        math_up = health.wait_for(MATH_SERVICE, "SERVING", healed, o.recovery_timeout_s)
        time.sleep(o.after_s)
        end = time.monotonic()
        load.stop()
        result = new_result(name, load, load.started, end, o.rate)
        during = [c for c in load.calls(start, healed) if c.code != "OK"]
        graceful_stop(result, server)
        check_events(
            result, read_stored(url), acknowledged=load.acknowledged(), attempted=load.attempted()
        )
    slowest = max((c.ended - c.started for c in during), default=0.0)
    codes = Counter(c.code for c in during)
    result.check(
        "calls failed with UNAVAILABLE during the stall",
        bool(during) and set(codes) == {"UNAVAILABLE"},
        codes_text(codes),
    )
    result.check(
        f"each within ORI_DB_TIMEOUT_SECONDS + {o.stall_margin_s:g} s ({limit:g} s)",
        bool(during) and slowest <= limit,
        f"slowest failed call {slowest:.2f} s",
    )
    for service, label in ((MATH_SERVICE, "MathHelper"), (EVENTS_SERVICE, "events service")):
        seen = health.first(service, "NOT_SERVING", start, healed + 0.5)
        result.check(
            f"{label} health NOT_SERVING during the stall",
            seen is not None,
            f"{seen - start:.2f} s after it began" if seen is not None else "never",
        )
    overall = health.statuses("", start, healed)
    result.check("overall health SERVING (alive)", "SERVING" in overall, f"seen {sorted(overall)}")
    recovered(result, "first successful call", healed, first_ok)
    if math_up is not None:
        result.recovery += f"; MathHelper SERVING {math_up - healed:.2f} s"
    timeouts = {
        s or "overall": health.count(s, "DEADLINE_EXCEEDED", start, healed) for s in services
    }
    if any(timeouts.values()):
        # Health checks share the server's call threads with blocked sync calls; reported, not
        # hidden behind a longer probe timeout (the server side is to be fixed).
        result.notes.append(
            f"health probes that timed out ({health.timeout_s:g} s) during the stall: "
            + ", ".join(f"{s} {n}" for s, n in timeouts.items() if n)
        )
    result.notes.append(f"{len(during)} calls failed during the {o.fault_s:g} s stall")
    return result
