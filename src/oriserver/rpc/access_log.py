"""The per-RPC log lines, formatted directly and written in batches.

These lines bypass the logging module on purpose: measured with scripts/bench, a
LogRecord, a handler call and a flushed write per RPC cost about a tenth of the
server's throughput. Here a line is a formatted string appended to a list, and the
queue is written with one write() every 100 ms by a background thread (or
sooner, when it grows); a crash can lose the last interval's lines. Handler
threads only append to a deque, which is safe without a lock. The lines look exactly like
the logging module's JSON or text output, and respect ORI_LOG_LEVEL (they are INFO).
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from typing import TextIO
from urllib.parse import unquote

_dumps = json.dumps
MAX_PENDING = 2000  # lines; a burst is written at once rather than held


class AccessLog:
    def __init__(self, stream: TextIO, log_format: str, flush_interval_s: float = 0.1) -> None:
        self._stream = stream
        self._json = log_format == "json"
        self._flush_interval_s = flush_interval_s
        self._pending: collections.deque[str] = collections.deque()
        self._second = -1
        self._stamp = ""
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _time(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}+00:00"

    def add(self, method: str, peer: str, code: str, seconds: float, trace_id: str | None) -> None:
        stamp = self._time(time.time())
        peer = unquote(peer)
        ms = round(seconds * 1000, 3)
        if self._json:
            trace = f',"trace_id":"{trace_id}"' if trace_id else ""
            line = (
                f'{{"time":"{stamp}","level":"INFO","logger":"oriserver.rpc","message":"rpc",'
                f'"method":{_dumps(method)},"peer":{_dumps(peer)},"code":"{code}",'
                f'"duration_ms":{ms}{trace}}}\n'
            )
        else:
            trace = f" trace_id={trace_id}" if trace_id else ""
            line = f"{stamp} INFO    oriserver.rpc: rpc method={method} peer={peer} code={code} duration_ms={ms}{trace}\n"
        pending = self._pending
        pending.append(line)
        if len(pending) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        with self._write_lock:  # one writer at a time keeps lines whole and in order
            lines = [pending.popleft() for _ in range(len(pending))]
            with contextlib.suppress(OSError, ValueError):  # stdout gone: nothing to do
                self._stream.write("".join(lines))
                self._stream.flush()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_interval_s):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
