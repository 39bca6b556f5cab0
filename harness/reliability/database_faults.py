"""Scenarios 2 and 3: PostgreSQL cut off or slowed down, through the fault-injecting proxy,
in the middle of the load."""

from __future__ import annotations

import time
from collections import Counter

from harness.faultproxy import fault_proxy
from harness.postgres import proxied, proxy_target
from harness.reliability.kit import (
    Context,
    codes_text,
    graceful_stop,
    paced_load,
    read_stored,
    recovered,
    server_env,
    wait_first_ok,
)
from harness.reliability.probes import (
    EVENTS_SERVICE,
    HealthWatch,
    stored_outcome_ids,
    wait_stored,
)
from harness.reliability.verdict import Result, check_events
from harness.servers import running_server

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
        env = server_env(
            proxied(url, proxy.port), durability, ORI_DB_TIMEOUT_SECONDS=f"{o.db_timeout_s:g}"
        )
        with running_server(ctx.workdir, env) as server, HealthWatch(server.target) as health:
            with paced_load(ctx, server) as load:
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
                    recovered(result, "all buffered events written", healed, written)
                else:
                    first_ok = wait_first_ok(load, healed, o.recovery_timeout_s)
                    recovered(result, "first successful call", healed, first_ok)
                events_up = health.wait_for(EVENTS_SERVICE, "SERVING", healed, o.recovery_timeout_s)
                if events_up is not None:
                    result.recovery += f"; events SERVING {events_up - healed:.2f} s"
                time.sleep(o.after_s)
                end = time.monotonic()
            result.held_rps = load.held_rps(load.started, end)
            result.errors, result.error_details = load.errors(), load.details
            overall = health.statuses("", fault_start)
            noticed = health.first(EVENTS_SERVICE, "NOT_SERVING", fault_start, healed)
            graceful_stop(result, server)
            check_events(
                result,
                read_stored(url),
                acknowledged=load.acknowledged(),
                attempted=load.attempted(),
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
        result.check("clients saw no errors", not result.errors, codes_text(result.errors))
    else:
        late = load.errors(since=healed + (result.recovery_s or 0) + 1.0)
        result.check(
            "errors are UNAVAILABLE, and only until recovery",
            set(result.errors) <= {"UNAVAILABLE"} and not late,
            f"{codes_text(result.errors)}; after recovery: {codes_text(late)}",
        )
        result.check(
            "calls refused during the outage",
            load.errors(*during)["UNAVAILABLE"] > 0,
            f"{load.errors(*during)['UNAVAILABLE']} UNAVAILABLE while cut",
        )
    return result
