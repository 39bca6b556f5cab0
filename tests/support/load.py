"""Client threads that call Summation with unique inputs and remember every outcome."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

from oriserver._generated import mathhelper_pb2 as pb
from oriserver._generated import mathhelper_pb2_grpc as pb_grpc

ANSWERED = {"OK", "OUT_OF_RANGE", "INVALID_ARGUMENT"}  # the server calculated and replied


@dataclass
class Load:
    """Each call is Summation(first=<unique id>, last=1), so stored events can be matched."""

    target: str
    clients: int = 4
    stop_on_error: bool = False
    outcomes: dict[int, str] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        self._threads = [
            threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _client(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.MathHelperStub(channel)
            while not self._stop.is_set():
                with self._lock:
                    call_id = next(self._ids)
                try:
                    stub.Summation(pb.SummationInput(first=call_id, last=1), timeout=5)
                    code = "OK"
                except grpc.RpcError as error:
                    code = error.code().name
                with self._lock:
                    self.outcomes[call_id] = code
                if code != "OK":
                    if self.stop_on_error:
                        return
                    time.sleep(0.01)

    def wait_for(self, calls: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < calls:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.outcomes)} calls completed")
            time.sleep(0.01)

    def wait_for_ok_since(self, completed: int, oks: int, timeout: float = 30) -> None:
        """Wait until `oks` calls that completed after the first `completed` ones succeeded."""
        deadline = time.monotonic() + timeout
        while self.codes_since(completed)["OK"] < oks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.codes_since(completed)} since call {completed}")
            time.sleep(0.01)

    def codes_since(self, completed: int) -> Counter[str]:
        """Outcome codes of the calls that completed after the first `completed` ones."""
        with self._lock:
            return Counter(itertools.islice(self.outcomes.values(), completed, None))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def answered(self) -> set[int]:
        with self._lock:
            return {i for i, code in self.outcomes.items() if code in ANSWERED}

    def codes(self) -> Counter[str]:
        with self._lock:
            return Counter(self.outcomes.values())
