"""The server process's side of the event host, in-process or across a process boundary.

Both classes are the recording pipeline's ``CallSink`` (service/ports.py):
``InlineHost`` calls an EventHost directly; ``ProcessHost`` starts one in a
child process and talks to it with the typed messages of messages.py.

Why a child process: every server process runs its RPCs on threads that share
one interpreter lock. Measured here, database writes, the projection and the
reactor done in the server process took 30-40 % of its RPC throughput; done
by a child they cost the serving process only the hand-over of each batch.

A host that dies is started again at the next call. One that does not answer
within the call's timeout (stopped, or stuck on a database that holds its
connection open and answers nothing) is killed, and the call fails with
StoreUnavailable; the next call starts a fresh host. A batch whose reply never
came may or may not have been committed: it is sent again as it was, and the
store's idempotent append keeps it once (store/rows.py derives its ids).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from oriserver.errors import SchemaNotReady, StoreError, StoreUnavailable
from oriserver.eventhost.messages import (
    AppendCalls,
    Done,
    HostStats,
    Ping,
    Refusal,
    Refused,
    Reply,
    Request,
    Stop,
)
from oriserver.service.calls import CallRecord
from oriserver.service.ports import Appended

if TYPE_CHECKING:
    from oriserver.config.settings import Settings
    from oriserver.eventhost.host import EventHost

log = logging.getLogger("oriserver.events.host")

_ERRORS: dict[Refusal, type[StoreError]] = {
    Refusal.SCHEMA: SchemaNotReady,
    Refusal.UNAVAILABLE: StoreUnavailable,
    Refusal.ERROR: StoreError,
}


def _result(reply: Reply) -> Done:
    if isinstance(reply, Refused):
        raise _ERRORS[reply.reason](reply.message)
    return reply


class InlineHost:
    """The event host in this process: no boundary, the same messages."""

    def __init__(self, host: EventHost) -> None:
        self._host = host
        self._lock = threading.Lock()
        self._started = False
        self.stats = HostStats()

    @property
    def pid(self) -> int | None:
        return None

    def _call(self, request: Request) -> Done:
        with self._lock:
            if not self._started:
                self._host.start()
                self._started = True
            reply = self._host.handle(request)
        self.stats = reply.stats
        return _result(reply)

    def append_calls(
        self, origin: int, first_seq: int, records: list[CallRecord], timeout_s: float
    ) -> Appended:
        done = self._call(AppendCalls(origin, first_seq, records))
        return Appended(done.stored, done.head)

    def ping(self, timeout_s: float) -> None:
        self._call(Ping())

    def close(self) -> None:
        with self._lock:
            if self._started:
                self._host.stop()
                self._started = False


class ProcessHost:
    """The event host in a child process, started on first use and again after it dies."""

    def __init__(self, settings: Settings, start_timeout_s: float = 30.0) -> None:
        self._settings = settings
        self._start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._closed = False
        self.starts = 0
        self.stats = HostStats()

    @property
    def pid(self) -> int | None:
        """The host process's id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def append_calls(
        self, origin: int, first_seq: int, records: list[CallRecord], timeout_s: float
    ) -> Appended:
        done = self._call(AppendCalls(origin, first_seq, records), timeout_s)
        return Appended(done.stored, done.head)

    def ping(self, timeout_s: float) -> None:
        self._call(Ping(), timeout_s)

    def _call(self, request: Request, timeout_s: float) -> Done:
        with self._lock:
            connection = self._ensure_started()
            try:
                connection.send(request)
                if not connection.poll(timeout_s):
                    self._discard()
                    raise StoreUnavailable(
                        f"the event host did not answer within {timeout_s:g}s; it was stopped "
                        "and a new one starts with the next write"
                    )
                reply: Reply = connection.recv()
            except (EOFError, OSError) as error:
                self._discard()
                raise StoreUnavailable(
                    f"the event host process stopped ({error or 'end of file'})"
                ) from error
        self.stats = reply.stats
        return _result(reply)

    def _ensure_started(self) -> Connection:
        if self._closed:
            raise StoreUnavailable("the event host is shut down")
        process, connection = self._process, self._connection
        if connection is not None and process is not None and process.poll() is None:
            return connection
        self._discard()
        # A fresh interpreter (not fork: grpc's threads do not survive it), talking over a
        # socket pair; the host reads its settings first, then answers when it is ready.
        ours, theirs = socket.socketpair()
        process = subprocess.Popen(  # noqa: S603 - our own module, with our own interpreter
            [sys.executable, "-m", "oriserver.eventhost.main", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()  # so that our death is the host's end of file
        connection = Connection(ours.detach())
        self._process, self._connection = process, connection
        self.starts += 1
        if self.starts > 1:
            log.warning(
                "event host process restarted", extra={"pid": process.pid, "starts": self.starts}
            )
        try:
            connection.send(self._settings)
            ready = connection.poll(self._start_timeout_s) and isinstance(connection.recv(), Done)
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
            self._process.kill()  # works on a stopped (SIGSTOP) process too
            self._process.wait(5)
        self._process = self._connection = None

    def close(self, timeout_s: float = 15.0) -> None:
        """Ask the host to stop its workers and exit; kill it if it does not."""
        with self._lock:
            self._closed = True
            if self._connection is not None and self._process is not None:
                with contextlib.suppress(OSError):  # already gone: nothing to stop
                    self._connection.send(Stop())
                with contextlib.suppress(subprocess.TimeoutExpired):  # then it is killed below
                    self._process.wait(timeout_s)
            self._discard()
