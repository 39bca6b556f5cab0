"""The scenarios: each starts real servers on loopback, applies one fault under load, measures,
and returns a Result whose checks decide pass or fail.

The script (``python -m harness.reliability``) and the test suite (``tests/reliability``) call
these same functions; only the Options (durations, rate, burst size) differ.

Every load goes to 127.0.0.1, every phase is bounded by an Option or a timeout, and every
server, proxy, load thread and database is released in ``finally`` (``with``) blocks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from harness.reliability.database_faults import db_cut_async, db_cut_sync, db_latency
from harness.reliability.host_faults import (
    db_stalled,
    host_killed_async,
    host_killed_sync,
    host_stopped,
)
from harness.reliability.kit import FULL, QUICK, Context, Options
from harness.reliability.process_faults import sigkill_worker, sigkill_worker_sync, sigterm
from harness.reliability.readers import readers, readers_native
from harness.reliability.soak import connection_burst, steady
from harness.reliability.verdict import Result

__all__ = ["EVENTLESS", "FULL", "QUICK", "SCENARIOS", "Context", "Options", "run"]


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
    "host-killed-async": (host_killed_async, "SIGKILL of the event host under load (async)"),
    "host-killed-sync": (host_killed_sync, "the same in sync mode: nothing acknowledged lost"),
    "host-stopped": (host_stopped, "SIGSTOP of the event host (sync): UNAVAILABLE in time"),
    "db-stalled": (db_stalled, "PostgreSQL holds connections, answers nothing (sync)"),
    "readers": (readers, "100 subscribers catch up on 100,000 events; callers' p99 (grpcio)"),
    "readers-native": (readers_native, "the same on the native engine"),
}
# Scenarios whose load is not recorded calls with checked events.
EVENTLESS = frozenset({"readers", "readers-native"})


def run(name: str, ctx: Context) -> Result:
    """Run one scenario; an exception becomes a failed Result rather than ending the run."""
    function, _ = SCENARIOS[name]
    try:
        return function(ctx)
    except Exception as error:
        result = Result(name, 0.0, None, Counter(), 0, 0, "-")
        result.check("the scenario ran to its end", False, f"{type(error).__name__}: {error}")
        return result
