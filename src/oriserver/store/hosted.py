"""The server process's side of the event host: an Appender that forwards to it.

The batching writer appends through this object exactly as it would to a local
store; the host process does the database work (see host_process.py). If the
host dies or stops answering, calls raise StoreUnavailable and the next call
starts a fresh host, so the writer's usual retry-with-backoff covers it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from oriserver.domain.events import Event
from oriserver.errors import SchemaNotReady, StoreError, StoreUnavailable
from oriserver.store.host_process import HostOptions, HostStats
from oriserver.store.rows import to_wire

log = logging.getLogger("oriserver.events.host")

_ERRORS: dict[str, type[StoreError]] = {
    "schema": SchemaNotReady,
    "unavailable": StoreUnavailable,
    "store": StoreError,
}


class HostedStore:
    def __init__(self, options: HostOptions, call_timeout_s: float) -> None:
        self._options = options
        self._call_timeout_s = call_timeout_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._starts = 0

    @property
    def pid(self) -> int | None:
        """The host process's id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the host and wait until it is ready (a database outage does not delay this)."""
        with self._lock, contextlib.suppress(StoreUnavailable):  # the next call retries
            self._ensure_started()

    def _ensure_started(self) -> Connection:
        if (
            self._connection is not None
            and self._process is not None
            and self._process.poll() is None
        ):
            return self._connection
        self._discard()
        # A fresh interpreter (not fork: grpc's threads do not survive it), talking over a
        # socket pair; the host reads its options first, then answers "ready".
        ours, theirs = socket.socketpair()
        process = subprocess.Popen(  # noqa: S603 - our own module, with our own interpreter
            [sys.executable, "-m", "oriserver.store.host_entry", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()  # so that our death is the host's end of file
        connection = Connection(ours.detach())
        self._process, self._connection = process, connection
        self._starts += 1
        if self._starts > 1:
            log.warning(
                "event host process restarted", extra={"pid": process.pid, "starts": self._starts}
            )
        # Wait until it can take a batch, so that events are never held back by a host
        # that is still importing (a crash then would lose more than one flush interval).
        try:
            connection.send(self._options)
            ready = connection.poll(self._call_timeout_s) and connection.recv()[0] == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._discard()
            raise StoreUnavailable("the event host process did not start")
        return connection

    def _discard(self) -> None:
        if self._connection is not None:
            self._connection.close()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)
        self._process = self._connection = None

    def _call(self, operation: str, payload: Any = None) -> Any:
        with self._lock:
            try:
                connection = self._ensure_started()
                connection.send((operation, payload))
                if not connection.poll(self._call_timeout_s):
                    self._discard()
                    raise StoreUnavailable(
                        f"the event host did not answer within {self._call_timeout_s:g}s"
                    )
                reply = connection.recv()
            except (EOFError, OSError) as error:
                self._discard()
                raise StoreUnavailable(
                    f"the event host process stopped ({error or 'end of file'})"
                ) from error
        if reply[0] == "ok":
            return reply[1]
        raise _ERRORS.get(reply[1], StoreError)(reply[2])

    def append(self, events: Sequence[Event]) -> None:
        self._call("append", [to_wire(event) for event in events])

    def ping(self) -> None:
        self._call("ping")

    def head(self) -> int:
        return int(self._call("head"))

    def stats(self) -> HostStats:
        stats = self._call("stats")
        assert isinstance(stats, HostStats)
        return stats

    def close(self, timeout_s: float = 15.0) -> None:
        """Ask the host to stop its workers and exit; kill it if it does not."""
        with self._lock:
            if self._connection is not None and self._process is not None:
                with contextlib.suppress(OSError):  # already gone: nothing to stop
                    self._connection.send(("stop", None))
                with contextlib.suppress(subprocess.TimeoutExpired):  # then it is killed below
                    self._process.wait(timeout_s)
            self._discard()
