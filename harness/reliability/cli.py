"""``python -m harness.reliability`` (what ``scripts/reliability`` runs): scenarios in, one Markdown
table out; exit 1 if any scenario failed a check."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType
from typing import NoReturn

from harness.postgres import Postgres
from harness.reliability.probes import require_loopback
from harness.reliability.report import details, header, load_average, progress, table
from harness.reliability.scenarios import FULL, QUICK, SCENARIOS, Context, Options, run
from harness.reliability.verdict import Result
from oriserver.config.database import DatabaseUrl
from oriserver.store import migrate

# Command-line option -> Options field, for the duration and size knobs.
KNOBS = {
    "soak": ("soak_s", float, "steady: measured seconds after the warm-up"),
    "warmup": ("warmup_s", float, "steady: seconds of load before the first sample"),
    "before": ("before_s", float, "seconds of load before each fault"),
    "fault": ("fault_s", float, "seconds the database stays cut or slow"),
    "after": ("after_s", float, "seconds of load after recovery"),
    "rate": ("rate", float, "calls per second offered by all clients together (0: unpaced)"),
    "clients": ("clients", int, "client threads, one connection each"),
    "burst": ("burst", int, "connections in the burst, one call each"),
    "burst-concurrency": ("burst_concurrency", int, "burst connections open at once"),
    "tail-window": ("tail_window_s", float, "async SIGKILL: seconds of calls that may be lost"),
    "db-timeout": ("db_timeout_s", float, "ORI_DB_TIMEOUT_SECONDS for the database faults"),
    "host-kills": ("host_kills", int, "host killed: SIGKILLs of the event host"),
    "readers": ("readers", int, "readers: SubscribeEvents streams from position 0"),
    "reader-events": ("reader_events", int, "readers: events in the log before they start"),
    "readers-time": ("readers_s", float, "readers: seconds measured without, then with readers"),
    "readers-rate": ("readers_rate", float, "readers: calls per second offered meanwhile"),
}


def _scenarios(text: str) -> list[str]:
    names = list(SCENARIOS) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from all, {', '.join(SCENARIOS)}")
    return names


def _parser(prog: str) -> argparse.ArgumentParser:
    listing = "; ".join(f"{name}: {text}" for name, (_, text) in SCENARIOS.items())
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Bounded fault and soak scenarios against real oriserver processes on "
        f"loopback; prints a Markdown table, exits 1 if any check fails. Scenarios: {listing}.",
    )
    parser.add_argument(
        "--scenario", type=_scenarios, default=list(SCENARIOS), help="all (default) or names"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds per scenario (the tests' durations)"
    )
    for flag, (field, kind, text) in KNOBS.items():
        default = getattr(FULL, field)
        quick = getattr(QUICK, field)
        suffix = f"{default:g}" if default == quick else f"{default:g}; quick {quick:g}"
        parser.add_argument(f"--{flag}", type=kind, help=f"{text} ({suffix})")
    return parser


def _usage(message: str) -> NoReturn:
    print(f"reliability: {message}", file=sys.stderr)
    raise SystemExit(2)


def _options(args: argparse.Namespace) -> Options:
    options = QUICK if args.quick else FULL
    changes = {
        field: getattr(args, flag.replace("-", "_"))
        for flag, (field, _, _) in KNOBS.items()
        if getattr(args, flag.replace("-", "_")) is not None
    }
    options = dataclasses.replace(options, **changes)
    positive = (options.soak_s, options.fault_s, options.clients, options.burst, options.host_kills,
                options.readers, options.reader_events, options.readers_s, options.readers_rate)  # fmt: skip
    if min(positive) <= 0:
        _usage("soak, fault, clients, burst, host kills and the readers' knobs must be positive")
    if min(options.warmup_s, options.before_s, options.after_s, options.rate) < 0:
        _usage("durations and rate must not be negative")
    return options


def _describe(options: Options) -> str:
    return (
        f"soak {options.soak_s:g} s after {options.warmup_s:g} s warm-up; faults "
        f"{options.fault_s:g} s between {options.before_s:g} s and {options.after_s:g} s of load; "
        f"{options.rate:g} calls/s offered by {options.clients} clients; burst {options.burst} "
        f"({options.burst_concurrency} at a time); ORI_DB_TIMEOUT_SECONDS {options.db_timeout_s:g}"
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: every server, proxy and database is released


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = os.environ.get("BENCH_PROG", "python -m harness.reliability")
    args = _parser(prog).parse_args(argv)
    options = _options(args)
    signal.signal(signal.SIGTERM, _terminate)
    command = " ".join([prog, shlex.join(argv)]).strip()
    results: list[Result] = []
    workdir = Path(tempfile.mkdtemp(prefix="orireliability-"))
    postgres: Postgres | None = None
    started = time.monotonic()
    try:
        postgres = Postgres.start(os.environ)
        require_loopback(postgres.admin_url)
        print(
            "\n".join(header(command, f"{postgres.version}, {postgres.source}", _describe(options)))
        )
        print(flush=True)
        ctx = Context(options, workdir, _database_factory(postgres), progress)
        for name in args.scenario:
            progress(f"== {name}")
            result = run(name, ctx)
            progress(result.explain())
            results.append(result)
    except KeyboardInterrupt:
        progress("interrupted: every server, proxy and database was stopped")
        return 130
    finally:
        if postgres is not None:
            postgres.close()
        failed = [r for r in results if not r.passed]
        if failed:
            progress(f"server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(table(results) + details(results)))
    print(f"\nTotal {time.monotonic() - started:.0f} s; {load_average()} at the end.")
    if failed:
        progress(f"{len(failed)} scenario(s) failed: {', '.join(r.scenario for r in failed)}")
    return 1 if failed else 0


def _database_factory(postgres: Postgres) -> Callable[[], AbstractContextManager[str]]:
    """Each scenario gets an empty database of its own, migrated, and dropped afterwards."""

    @contextlib.contextmanager
    def database() -> Iterator[str]:
        url = postgres.create_database()
        try:
            migrate.upgrade(DatabaseUrl.parse(url))
            yield url
        finally:
            postgres.drop_database(url)

    return database
