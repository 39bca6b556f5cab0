"""The one Python load generator: client threads in a closed loop on MathHelper, each with one
call in flight, paced or as fast as the server answers, keeping when and how every call ended.

With the ``unique`` mix each call is ``Summation(first=<call id>, last=1)``, so the events table
tells which calls were stored (``input_first`` is the id). Every outcome carries the client's
monotonic clock at its start and end: the reliability scenarios say from it which calls were
acknowledged before or after a fault and when the first call succeeded after recovery, and the
benchmark takes its latencies and calls/s from the calls that ended inside its window.

Threads rather than asyncio: a blocking grpcio call releases the GIL while it waits, so threads
cost no more per call here, and a caller's test or scenario stays plain synchronous code.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from harness.load.stats import LoadResult
from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc

# "unique": Summation(first=<call id>, last=1); the others call fixed inputs, as the bench does.
MIXES = ("unique", "summation", "factorial", "both")
# The server calculated and replied: the call is "acknowledged" and its events are promised.
ANSWERED = frozenset({"OK", "OUT_OF_RANGE", "INVALID_ARGUMENT"})

# Every channel is its own TCP connection (no shared subchannel), so SO_REUSEPORT spreads them
# over workers; reconnection backoff is kept short so that a recovery time measures the server,
# not grpc's default client backoff (1 s growing to 120 s). Not min_reconnect_backoff_ms: grpc
# also uses it as the connect timeout (default 20 s), and at 100 ms a busy machine's handshakes
# fail as "tcp handshaker shutdown".
CHANNEL_OPTIONS = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)
ERROR_PAUSE_S = 0.05  # after a call the server did not answer, a client waits this long


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def call_once(
    stub: pb_grpc.MathHelperStub, call_id: int, deadline_s: float, details: dict[str, str]
) -> str:
    """One Summation(first=call_id, last=1); the status code's name, and the first details of
    each code kept in ``details``."""
    try:
        stub.Summation(pb.SummationInput(first=call_id, last=1), timeout=deadline_s)
    except grpc.RpcError as error:
        code = str(error.code().name)
        details.setdefault(code, str(error.details()))
        return code
    return "OK"


def _callers(
    stub: pb_grpc.MathHelperStub, mix: str, factorial_base: int
) -> list[Callable[[int, float], object]]:
    summation = pb.SummationInput(first=20, last=22)
    factorial = pb.FactorialInput(base=factorial_base)

    def unique(call_id: int, timeout: float) -> object:
        return stub.Summation(pb.SummationInput(first=call_id, last=1), timeout=timeout)

    def fixed_summation(_: int, timeout: float) -> object:
        return stub.Summation(summation, timeout=timeout)

    def fixed_factorial(_: int, timeout: float) -> object:
        return stub.Factorial(factorial, timeout=timeout)

    chosen: dict[str, list[Callable[[int, float], object]]] = {
        "unique": [unique],
        "summation": [fixed_summation],
        "factorial": [fixed_factorial],
        "both": [fixed_summation, fixed_factorial],
    }
    return chosen[mix]


@dataclass(frozen=True)
class Call:
    id: int
    started: float  # time.monotonic() when the call was sent
    ended: float  # time.monotonic() when the answer (or error) reached the client
    code: str


@dataclass
class Load:
    """``clients`` threads sharing ``rate`` calls per second (0: each as fast as it can) over
    ``connections`` channels (0: one per client)."""

    target: str
    clients: int = 8
    rate: float = 0.0
    deadline_s: float = 5.0
    first_id: int = 1
    connections: int = 0
    mix: str = "unique"
    factorial_base: int = 10
    started: float = 0.0
    details: dict[str, str] = field(default_factory=dict)  # the first details of each error code
    _next_id: int = field(init=False)
    _calls: list[Call] = field(default_factory=list)  # in order of ``ended``
    _channels: list[grpc.Channel] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.clients < 1 or self.connections < 0 or self.mix not in MIXES:
            raise ValueError(f"clients >= 1, connections >= 0, mix one of {', '.join(MIXES)}")
        self._next_id = self.first_id

    def connect(self, timeout_s: float = 10.0) -> Load:
        """Open the channels and wait until each is connected (before a measured window)."""
        self._open()
        try:
            for chan in self._channels:
                grpc.channel_ready_future(chan).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            self._close()
            raise ConnectionError(f"no connection to {self.target} within {timeout_s:g}s") from None
        return self

    def _open(self) -> None:
        if not self._channels:
            count = min(self.connections or self.clients, self.clients)
            self._channels = [channel(self.target) for _ in range(count)]

    def _close(self) -> None:
        for chan in self._channels:
            chan.close()
        self._channels = []

    def start(self, at: float | None = None) -> Load:
        """Start the clients, at the time.monotonic() instant ``at`` when given."""
        self._open()
        self.started = time.monotonic() if at is None else at
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
        stub = pb_grpc.MathHelperStub(self._channels[index % len(self._channels)])
        callers = _callers(stub, self.mix, self.factorial_base)
        interval = self.clients / self.rate if self.rate > 0 else 0.0
        due = self.started + interval * index / self.clients  # spread the clients out
        turn = index
        while not self._stop.is_set():
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            # Paced, without catching up on calls missed while the server was slow.
            due = max(due + interval, time.monotonic() - interval) if interval else due
            with self._lock:
                call_id = self._next_id
                self._next_id += 1
            started = time.monotonic()
            try:
                callers[turn % len(callers)](call_id, self.deadline_s)
                code = "OK"
            except grpc.RpcError as error:
                code = str(error.code().name)
                self.details.setdefault(code, str(error.details()))
            turn += 1
            with self._lock:  # the clock is read under the lock: _calls stays sorted
                self._calls.append(Call(call_id, started, time.monotonic(), code))
            if code not in ANSWERED:
                self._stop.wait(ERROR_PAUSE_S)

    def stop(self) -> None:
        """Stop the clients (each ends its call in flight) and close the channels."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.deadline_s + 10)
        self._close()

    # -- what happened -----------------------------------------------------
    def calls(self, since: float = 0.0, until: float = float("inf")) -> list[Call]:
        """Calls that ended in [since, until)."""
        with self._lock:
            calls = self._calls
            ends = [c.ended for c in calls]
            return calls[bisect.bisect_left(ends, since) : bisect.bisect_left(ends, until)]

    def count(self) -> int:
        """Calls ended so far, answered or not."""
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

    def codes_since(self, completed: int) -> Counter[str]:
        """Codes of the calls that ended after the first ``completed`` ones."""
        with self._lock:
            return Counter(c.code for c in self._calls[completed:])

    def errors(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        return Counter(c.code for c in self.calls(since, until) if c.code not in ANSWERED)

    def held_rps(self, since: float, until: float) -> float:
        """Acknowledged calls per second over [since, until)."""
        span = until - since
        return len(self.acknowledged(since, until)) / span if span > 0 else 0.0

    def first_ok_after(self, moment: float) -> float | None:
        return next((c.ended for c in self.calls(moment) if c.code in ANSWERED), None)

    def result(self, since: float, until: float, client_cpu_s: float = 0.0) -> LoadResult:
        """The benchmark's figures for [since, until): OK calls, their latencies, other codes."""
        window = self.calls(since, until)
        ok = [c for c in window if c.code == "OK"]
        with self._lock:
            all_ok = sum(1 for c in self._calls if c.code == "OK")
        return LoadResult(
            window_s=until - since,
            ok=len(ok),
            latencies_us=[int((c.ended - c.started) * 1e6) for c in ok],
            errors=dict(Counter(c.code for c in window if c.code != "OK")),
            client_cpu_s=client_cpu_s,
            calls_including_warmup=all_ok,
        )

    def wait_for(self, calls: int, timeout: float = 30.0) -> None:
        """Until ``calls`` calls have ended in all."""
        deadline = time.monotonic() + timeout
        while self.count() < calls:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count()} calls completed in {timeout} s")
            time.sleep(0.01)

    def wait_for_ok_since(self, completed: int, oks: int, timeout: float = 30.0) -> None:
        """Until ``oks`` of the calls that ended after the first ``completed`` ones succeeded."""
        deadline = time.monotonic() + timeout
        while self.codes_since(completed)["OK"] < oks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.codes_since(completed)} since call {completed}")
            time.sleep(0.01)
