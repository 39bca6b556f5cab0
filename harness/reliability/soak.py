"""Scenarios 1 and 6: steady load with memory and descriptors watched, and a burst of new
connections."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from harness.load import ANSWERED, call_once, channel
from harness.reliability.kit import (
    MB,
    Context,
    codes_text,
    describe,
    graceful_stop,
    new_result,
    paced_load,
    read_stored,
    recovered,
    server_env,
    wait_until,
)
from harness.reliability.probes import (
    health_status,
    resources,
)
from harness.reliability.verdict import Result, check_events
from harness.servers import running_server
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc

# --- 1. steady load ----------------------------------------------------------------------


def steady(ctx: Context) -> Result:
    """Steady paced load on PostgreSQL (async); RSS and FDs sampled after warm-up and at the end."""
    o = ctx.options
    with ctx.database() as url, running_server(ctx.workdir, server_env(url)) as server:
        with paced_load(ctx, server) as load:
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
        result = new_result("steady", load, start, end, o.rate)
        graceful_stop(result, server)
        check_events(
            result, read_stored(url), acknowledged=load.acknowledged(), attempted=load.attempted()
        )
    growth = last.rss_bytes / first.rss_bytes - 1
    result.check("clients saw no errors", not result.errors, codes_text(result.errors))
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
    result.notes.append(f"after warm-up: {describe(first)}; at the end: {describe(last)}")
    return result


# --- 6. a burst of new connections ------------------------------------------------------------


def connection_burst(ctx: Context) -> Result:
    """``burst`` new connections, one call each, ``burst_concurrency`` at a time."""
    o = ctx.options
    with ctx.database() as url, running_server(ctx.workdir, server_env(url)) as server:
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
        settled = wait_until(
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
        recovered(result, "descriptors back to the baseline", end, settled)
        graceful_stop(result, server)
        check_events(
            result,
            read_stored(url),
            acknowledged=acknowledged,
            attempted=set(range(1, o.burst + 1)),
        )
    result.check(
        "every call of the burst answered",
        len(acknowledged) == o.burst,
        f"{len(acknowledged)} of {o.burst}; errors: {codes_text(result.errors)}",
    )
    result.check("SERVING after the burst", health == "SERVING", health)
    result.notes.append(
        f"{o.burst} connections in {end - start:.2f} s ({o.burst_concurrency} at a time); "
        f"server FDs {before.fds} before, {peak.fds} at the peak, {after.fds} after"
    )
    return result
