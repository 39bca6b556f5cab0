"""``oriserver``: serve, or run an admin task, from settings in the environment.

Exit codes: 0 after a clean shutdown, 1 on a runtime failure, 2 on a usage or
configuration error. Users see one-line errors, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from oriserver import __version__
from oriserver.cli.arguments import positive, positive_seconds, utc_time
from oriserver.config import ConfigError, Settings, load_settings
from oriserver.logs import configure_logging

if TYPE_CHECKING:
    from oriserver.bootstrap import Runtime

log = logging.getLogger("oriserver")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oriserver",
        description="The MathHelper gRPC server. Configuration comes from ORI_* environment "
        "variables (see the README).",
        epilog="example: ORI_PORT=50051 oriserver serve",
    )
    parser.add_argument("--version", action="version", version=f"oriserver {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "serve",
        help="run the gRPC server (the default)",
        description="Run the gRPC server until SIGTERM or SIGINT.",
        epilog="example: ORI_PORT=50051 ORI_LOG_FORMAT=text oriserver serve",
    )
    db = commands.add_parser(
        "db", help="database schema tasks", description="Database schema tasks."
    )
    db_commands = db.add_subparsers(dest="db_command", metavar="TASK", required=True)
    db_commands.add_parser(
        "upgrade",
        help="apply pending schema migrations, then exit",
        description="Apply pending Alembic migrations to ORI_DATABASE_URL, then exit. Safe to run "
        "while servers are up, and from several places at once.",
        epilog="example: ORI_DATABASE_URL=postgresql://ori@db/ori oriserver db upgrade",
    )
    db_commands.add_parser(
        "current",
        help="show the schema revision (exit 1 if an upgrade is needed)",
        description="Show the database's schema revision; exit 1 if it is not the one this version needs.",
        epilog="example: oriserver db current",
    )
    wait = db_commands.add_parser(
        "wait",
        help="wait until the schema is current (exit 1 on timeout); never migrates",
        description="Wait until ORI_DATABASE_URL answers and its schema is at the revision this "
        "version needs, printing a line whenever that changes. Exit 0 when it is, 1 on timeout. "
        "With --reachable, only until it answers (the step before `oriserver db upgrade`). "
        "It never migrates: that is `oriserver db upgrade`.",
        epilog="example: oriserver db wait --timeout 900",
    )
    wait.add_argument(
        "--timeout",
        type=positive_seconds,
        default=300.0,
        metavar="SECONDS",
        help="give up after this long (default: 300)",
    )
    wait.add_argument(
        "--interval",
        type=positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="pause between checks (default: 2)",
    )
    wait.add_argument(
        "--reachable",
        action="store_true",
        help="only wait until the database answers, whatever its schema (before `db upgrade`)",
    )
    events = commands.add_parser("events", help="event log tasks", description="Event log tasks.")
    event_commands = events.add_subparsers(dest="events_command", metavar="TASK", required=True)
    rebuild = event_commands.add_parser(
        "rebuild",
        help="replay the archives and the log into fresh running totals",
        description="Fold every archived event (--archive) and then every stored one into new "
        "running totals and swap them in atomically. Run it after deploying a fixed calculator. "
        "Once events were archived, every archive file is needed.",
        epilog="example: oriserver events rebuild --archive events-2026-10.jsonl.gz",
    )
    rebuild.add_argument(
        "--archive",
        dest="archives",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="an archive written by `oriserver events archive` (repeatable, any order)",
    )
    archive = event_commands.add_parser(
        "archive",
        help="move the events stored before a time to a compressed file",
        description="Write the events stored before --before (up to the first one stored at or "
        "after it, and none a projection or reactor has not processed yet) to --output as "
        "gzip-compressed JSON lines, then remove them from the log. The running totals do not "
        "change. Safe while servers append.",
        epilog="example: oriserver events archive --before 2026-11-01T00:00:00Z "
        "--output events-2026-10.jsonl.gz",
    )
    archive.add_argument(
        "--before", required=True, type=utc_time, metavar="TIME", help="ISO 8601 with an offset"
    )
    archive.add_argument(
        "--output", required=True, type=Path, metavar="FILE", help="a new file (never overwritten)"
    )
    archive.add_argument(
        "--batch",
        type=positive,
        default=10_000,
        metavar="N",
        help="positions removed per transaction (default: 10000)",
    )
    return parser


_early_stop: list[int] = []  # signals that arrived before the event loop could take them


def _remember_signal(signum: int, _frame: object) -> None:
    _early_stop.append(signum)


def remember_stop_signals() -> None:
    """Until the event loop takes over, note SIGTERM/SIGINT instead of dying at once."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _remember_signal)


def run_server(settings: Settings, runtime: Runtime | None = None) -> int:
    """Serve in this process until SIGTERM/SIGINT (also the body of each worker).

    A signal during start-up is remembered and honoured as soon as the server is up,
    so it too ends in a graceful stop instead of the default abrupt exit."""
    remember_stop_signals()
    from oriserver.bootstrap import build_server
    from oriserver.errors import StoreError
    from oriserver.rpc.server import BindError
    from oriserver.telemetry.exposition import MetricsBindError

    try:
        app = build_server(settings, runtime)
    except (BindError, StoreError, MetricsBindError) as error:
        log.error("cannot start: %s", error)
        return EXIT_FAILURE
    except ConfigError as error:  # a file that changed after the settings were read
        print(f"oriserver: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    if _early_stop:
        stop.set()
    app.start()
    log.info(
        "serving",
        extra={
            "address": f"{settings.listen_host}:{app.port}",
            "instance_id": settings.instance_id,
            "engine": settings.serving.engine.value,
            "metrics_port": app.metrics_port,
        },
    )
    stop.wait()
    log.info("shutting down", extra={"grace_seconds": settings.shutdown_grace_s})
    lost = app.stop()
    log.info("stopped", extra={"lost_events": lost})
    return EXIT_FAILURE if lost else EXIT_OK


def _admin(args: argparse.Namespace) -> Callable[[Settings], int] | None:
    from oriserver.cli import admin

    if args.command == "db" and args.db_command == "wait":
        return functools.partial(
            admin.db_wait,
            timeout_s=args.timeout,
            interval_s=args.interval,
            reachable=args.reachable,
        )
    if args.command == "db":
        return {"upgrade": admin.db_upgrade, "current": admin.db_current}[args.db_command]
    if args.command == "events" and args.events_command == "archive":
        return functools.partial(
            admin.events_archive, before=args.before, output=args.output, batch=args.batch
        )
    if args.command == "events":
        return functools.partial(admin.events_rebuild, archives=args.archives)
    return None


class _Stopped(Exception):
    """SIGTERM or SIGINT arrived while an admin task ran."""


def _run_admin(task: Callable[[Settings], int], settings: Settings) -> int:
    """Run one admin task; SIGTERM (or SIGINT) ends it with exit 1 and one line.

    A process that is PID 1 (an init container, ``docker run``) gets no default action
    for SIGTERM: without a handler ``db wait`` would sit out the whole grace period."""

    def stop(signum: int, _: object) -> None:
        raise _Stopped(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    try:
        return task(settings)
    except _Stopped as stopped:
        print(f"oriserver: stopped by {stopped}", file=sys.stderr)
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(os.environ)  # noqa: TID251 - the one place the environment is read
    except ConfigError as error:
        print(f"oriserver: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_format, settings.log_level)
    task = _admin(args)
    if task is not None:
        return _run_admin(task, settings)
    if settings.workers > 1:
        from oriserver.cli.workers import supervise

        return supervise(settings)
    # A stray multiprocess directory would hide this process's metrics from its own /metrics.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # noqa: TID251 - before prometheus_client loads
    return run_server(settings)
