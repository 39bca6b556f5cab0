"""Scenarios 4 and 5: SIGTERM of the server under load, and SIGKILL of one of two workers."""

from __future__ import annotations

import contextlib
import time
from collections import Counter

from harness.reliability.kit import (
    Context,
    codes_text,
    graceful_stop,
    new_result,
    paced_load,
    read_stored,
    recovered,
    relative,
    server_env,
    wait_first_ok,
    wait_until,
)
from harness.reliability.probes import (
    events_by_instance,
    kill,
)
from harness.reliability.verdict import Result, check_events
from harness.servers import running_server, start_server

# --- 4. SIGTERM under load ----------------------------------------------------------------


def sigterm(ctx: Context) -> Result:
    """SIGTERM under load (async); then a new process on the same port, as an orchestrator would."""
    o = ctx.options
    with ctx.database() as url, contextlib.ExitStack() as stack:
        env = server_env(url)
        first = start_server(ctx.workdir, env)
        stack.callback(first.stop)
        with paced_load(ctx, first) as load:
            time.sleep(o.before_s)
            result = Result("sigterm", 0.0, o.rate or None, Counter(), 0, 0, "-")
            signalled = time.monotonic()
            ctx.say(f"SIGTERM sent to pid {first.pid}")
            drain = graceful_stop(result, first, "SIGTERM under load")
            exited = time.monotonic()
            second = start_server(ctx.workdir, env, port=first.port)
            stack.callback(second.stop)
            serving = time.monotonic()
            first_ok = wait_first_ok(load, serving, o.recovery_timeout_s)
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
            f"{codes_text(result.errors)}; 1 s after SERVING: {codes_text(late)}",
        )
        graceful_stop(result, second, "SIGTERM of the restarted server")
        stored = read_stored(url)
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
        running_server(ctx.workdir, server_env(url, durability, **extra)) as server,
    ):
        wait_until(lambda: len(server.records("serving")) >= 2, o.recovery_timeout_s)
        with paced_load(ctx, server) as load:
            # Each worker starts its event host with its first call, slowly on a loaded machine:
            # the kill comes once both are writing, so the tail window is about the kill alone.
            wait_until(lambda: len(events_by_instance(url)) >= 2, o.recovery_timeout_s)
            time.sleep(o.before_s)
            victim = min(server.children(), key=lambda p: p.pid)
            killed = time.monotonic()
            kill(victim.pid)
            ctx.say(f"SIGKILL sent to worker pid {victim.pid}")
            # A new worker logs "serving" once it listens and reports SERVING.
            replaced = wait_until(lambda: len(server.records("serving")) >= 3, o.recovery_timeout_s)
            time.sleep(o.after_s)
            end = time.monotonic()
        result = new_result(name, load, load.started, end, o.rate)
        recovered(result, "the new worker SERVING", killed, replaced)
        exits = [
            r for r in server.records("worker exited unexpectedly") if r.get("pid") == victim.pid
        ]
        result.check(
            "the supervisor saw the crash and replaced the worker",
            bool(exits) and len(server.children()) == 2,
            f"{len(server.children())} workers after the restart",
        )
        graceful_stop(result, server)
        # What async mode may lose: calls the killed worker acknowledged but had not flushed.
        # Clients cannot tell which worker answered, so the bound is in time: only calls
        # acknowledged within tail_window_s before the kill (or just after) may be missing.
        # Sync mode may lose nothing.
        tail = None
        if durability == "async":
            tail = load.acknowledged(since=killed - o.tail_window_s, until=killed + 0.5)
        stored = read_stored(url)
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
            f"{relative(ends[0])} to {relative(ends[-1])} the kill (window {o.tail_window_s:g} s)"
        )
    else:
        result.notes.append("no call lost with the killed worker")
    result.check(
        "errors are UNAVAILABLE, and only around the kill",
        set(result.errors) <= {"UNAVAILABLE"} and not late,
        f"{codes_text(result.errors)}; 1 s after the kill: {codes_text(late)}",
    )
    return result
