"""A deadline for every PostgreSQL transaction, even when the database stops answering.

libpq's timeouts cover connecting (connect_timeout) and data the kernel cannot
deliver (tcp_user_timeout), but not a database, or a proxy in front of it, that
keeps the connection open and never answers: a query then waits forever, and
psycopg has no client-side query timeout for its blocking connections. So each
transaction is watched: one thread per store looks at the transactions in
flight, and shuts down the socket of one that has run past its deadline. The
blocked call then fails at once, the pool drops the connection, and the store
reports StoreUnavailable naming the timeout.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


class StallGuard:
    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[float, int]] = {}  # token -> (deadline, socket fd)
        self._severed: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @contextlib.contextmanager
    def watching(self, connection: Any) -> Iterator[int]:
        """Watch ``connection`` (a psycopg connection) for ``limit_s``; yields a token that
        ``severed`` recognises afterwards."""
        token = next(self._tokens)
        with self._lock:
            self._watched[token] = (time.monotonic() + self.limit_s, connection.pgconn.socket)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pg-stall-guard", daemon=True
                )
                self._thread.start()
        try:
            yield token
        finally:
            with self._lock:
                self._watched.pop(token, None)

    def severed(self, token: int) -> bool:
        """Whether the guard cut this transaction's connection (and forgets it)."""
        with self._lock:
            if token in self._severed:
                self._severed.discard(token)
                return True
            return False

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = min(0.25, self.limit_s / 4)
        while not self._stop.wait(interval):
            now = time.monotonic()
            with self._lock:
                expired = [(t, fd) for t, (deadline, fd) in self._watched.items() if now > deadline]
                for token, _ in expired:
                    self._watched.pop(token, None)
                    self._severed.add(token)
            for _, fd in expired:
                _shut_down(fd)


def _shut_down(fd: int) -> None:
    """Shut the socket down (not close: the fd still belongs to libpq, which closes it)."""
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fd))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()
