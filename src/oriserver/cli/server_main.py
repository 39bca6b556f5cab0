"""``oriserver``: serve, or run an admin task, from settings in the environment.

Exit codes: 0 after a clean shutdown, 1 on a runtime failure, 2 on a usage or
configuration error. Users see one-line errors, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from oriserver import __version__
from oriserver.config import ConfigError, Settings, load_settings
from oriserver.logs import configure_logging

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
    return parser


async def _serve(settings: Settings) -> int:
    from oriserver.app import build_application
    from oriserver.rpc.server import BindError

    try:
        app = build_application(settings)
    except BindError as error:
        log.error("%s", error)
        return EXIT_FAILURE
    await app.start()
    log.info(
        "serving",
        extra={
            "address": f"{settings.listen_host}:{app.port}",
            "instance_id": settings.instance_id,
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down", extra={"grace_seconds": settings.shutdown_grace_s})
    await app.stop()
    log.info("stopped")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(os.environ)  # noqa: TID251 - the one place the environment is read
    except ConfigError as error:
        print(f"oriserver: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_format, settings.log_level)
    command = args.command or "serve"
    if command == "serve":
        return asyncio.run(_serve(settings))
    return EXIT_USAGE
