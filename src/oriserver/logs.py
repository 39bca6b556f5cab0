"""Log configuration: one JSON object (or one readable line) per record on stdout.

A hand-written formatter instead of a logging library: the output is a flat
JSON object of the record's standard fields plus the ``extra`` fields the
caller passed, which is twenty lines over the standard library, and the
per-RPC line sits on the hot path where an extra dependency would cost time.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class _Clock:
    """ISO-8601 UTC timestamps with milliseconds, formatting the date and time once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((record.created - second) * 1000):03d}+00:00"


_timestamp = _Clock()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_extras(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encode(line)


class TextFormatter(logging.Formatter):
    """A human-readable line: time, level, logger, message and key=value extras."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        text = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            text = f"{text} {extras}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


def configure_logging(log_format: str, level: str, stream: IO[str] | None = None) -> None:
    """Install the one stdout handler on the root logger; called once from main."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Neither formatter prints threads or processes; not collecting them makes every record cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Libraries that narrate internals at INFO: keep their warnings, drop the chatter.
    for chatty in ("grpc", "alembic", "psycopg.pool"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
