"""Client threads that call Summation with unique inputs and keep when and how every call ended.

Each call is ``Summation(first=<call id>, last=1)``, so the events table tells which calls were
stored (``input_first`` is the id). Unlike ``tests/support/load.py`` every outcome carries the
client's monotonic clock at the end of the call: the scenarios need it to say which calls were
acknowledged before or after a fault, how many calls per second were held, and when the first
call succeeded after recovery.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc

# The server calculated and replied: the call is "acknowledged" and its events are promised.
ANSWERED = frozenset({"OK", "OUT_OF_RANGE", "INVALID_ARGUMENT"})

# Every client thread has its own TCP connection (no shared subchannel), so SO_REUSEPORT spreads
# them over workers; reconnection backoff is kept short so that a recovery time measures the
# server, not grpc's default client backoff (1 s growing to 120 s). Not min_reconnect_backoff_ms:
# grpc also uses it as the connect timeout (default 20 s), and at 100 ms a busy machine's
# handshakes fail as "tcp handshaker shutdown".
CHANNEL_OPTIONS = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)
ERROR_PAUSE_S = 0.05  # after a failed call a client waits this long before its next one


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def call_once(
    stub: pb_grpc.MathHelperStub, call_id: int, deadline_s: float, details: dict[str, str]
) -> str:
    """One Summation; returns the status code's name, and keeps the first details of each code."""
    try:
        stub.Summation(pb.SummationInput(first=call_id, last=1), timeout=deadline_s)
    except grpc.RpcError as error:
        code = str(error.code().name)
        details.setdefault(code, str(error.details()))
        return code
    return "OK"


@dataclass(frozen=True)
class Call:
    id: int
    ended: float  # time.monotonic() when the answer (or error) reached the client
    code: str


@dataclass
class Load:
    """``clients`` threads sharing ``rate`` calls per second (0: each as fast as it can)."""

    target: str
    clients: int = 8
    rate: float = 0.0
    deadline_s: float = 5.0
    first_id: int = 1
    started: float = 0.0
    details: dict[str, str] = field(default_factory=dict)  # the first details of each error code
    _next_id: int = field(init=False)
    _calls: list[Call] = field(default_factory=list)  # in order of ``ended``
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._next_id = self.first_id

    def start(self) -> Load:
        self.started = time.monotonic()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), name=f"load-{n}", daemon=True)
            for n in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _client(self, index: int) -> None:
        interval = self.clients / self.rate if self.rate > 0 else 0.0
        due = time.monotonic() + interval * index / self.clients  # spread the clients out
        with channel(self.target) as chan:
            stub = pb_grpc.MathHelperStub(chan)
            while not self._stop.is_set():
                if interval:
                    delay = due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                    # Paced, without catching up on calls missed while the server was slow.
                    due = max(due + interval, time.monotonic() - interval)
                with self._lock:
                    call_id = self._next_id
                    self._next_id += 1
                code = call_once(stub, call_id, self.deadline_s, self.details)
                with self._lock:  # the clock is read under the lock: _calls stays sorted
                    self._calls.append(Call(call_id, time.monotonic(), code))
                if code not in ANSWERED:
                    self._stop.wait(ERROR_PAUSE_S)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.deadline_s + 10)

    # -- what happened -----------------------------------------------------
    def calls(self, since: float = 0.0, until: float = float("inf")) -> list[Call]:
        """Calls that ended in [since, until)."""
        with self._lock:
            calls = self._calls
            ends = [c.ended for c in calls]
            return calls[bisect.bisect_left(ends, since) : bisect.bisect_left(ends, until)]

    def count(self) -> int:
        with self._lock:
            return len(self._calls)

    def attempted(self) -> set[int]:
        """Every id a client sent (or was about to send): ids are handed out in order."""
        with self._lock:
            return set(range(self.first_id, self._next_id))

    def acknowledged(self, since: float = 0.0, until: float = float("inf")) -> set[int]:
        return {c.id for c in self.calls(since, until) if c.code in ANSWERED}

    def codes(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        return Counter(c.code for c in self.calls(since, until))

    def errors(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        return Counter(c.code for c in self.calls(since, until) if c.code not in ANSWERED)

    def held_rps(self, since: float, until: float) -> float:
        """Acknowledged calls per second over [since, until)."""
        span = until - since
        return len(self.acknowledged(since, until)) / span if span > 0 else 0.0

    def first_ok_after(self, moment: float) -> float | None:
        return next((c.ended for c in self.calls(moment) if c.code in ANSWERED), None)

    def wait_for(self, calls: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < calls:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count()} calls completed in {timeout} s")
            time.sleep(0.01)
