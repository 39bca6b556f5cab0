"""A background thread that repeats one step, led by a lease, and never dies silently.

Projection runners and reactors are such workers: each tick they take (or
renew) their lease, so only one replica runs them at a time, then do work
until there is none left. Errors are logged (rate-limited), counted, and
retried with backoff; a stop request ends the loop between steps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from abc import ABC, abstractmethod

from oriserver.errors import StoreError
from oriserver.recording.backoff import Backoff, RateLimit
from oriserver.service.ports import Leases

log = logging.getLogger("oriserver.background")


def holder_id(instance_id: str) -> str:
    """Unique per process: several workers of one pod must not share a lease."""
    return f"{instance_id}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class LeasedWorker(ABC):
    """Subclasses implement ``step`` (one unit of work; True if there may be more)."""

    name: str = "worker"

    def __init__(
        self, leases: Leases, holder: str, interval_s: float, lease_ttl_s: float = 15.0
    ) -> None:
        self._leases = leases
        self._holder = holder
        self._interval_s = interval_s
        self._lease_ttl_s = lease_ttl_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._backoff = Backoff(base=0.2, cap=10.0)
        self._errors = RateLimit(30.0)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.leading = False
        self.errors = 0

    @abstractmethod
    def step(self) -> bool:
        """Do one unit of work; return True if more work may be waiting."""

    def observe(self) -> None:  # noqa: B027 - optional hook, deliberately empty
        """Refresh statistics on replicas that do not hold the lease."""

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look for work now instead of at the next interval."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self.leading:
            with contextlib.suppress(StoreError):  # if unreachable, the lease simply expires
                self._leases.release_lease(self.name, self._holder)
            self.leading = False

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def renew_lease(self) -> bool:
        """Take or renew the lease; long steps call this between units of work."""
        leading = self._leases.try_lease(self.name, self._holder, self._lease_ttl_s)
        if leading != self.leading:
            log.info(
                "lease %s",
                "acquired" if leading else "lost",
                extra={"worker": self.name, "holder": self._holder},
            )
        self.leading = leading
        return leading

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self._interval_s
            try:
                if self.renew_lease():
                    while self.step() and not self._stop.is_set():
                        pass
                else:
                    self.observe()
                self._backoff.reset()
            except StoreError as error:
                delay = self._failed(error, logging.WARNING)
            except Exception as error:  # noqa: BLE001 - a bug must be reported, not end the thread
                delay = self._failed(error, logging.ERROR)
            self._wake.wait(delay)
            self._wake.clear()

    def _failed(self, error: Exception, level: int) -> float:
        self.errors += 1
        if self._errors.allow():
            log.log(
                level,
                "%s failed; retrying",
                self.name,
                exc_info=level >= logging.ERROR,
                extra={"worker": self.name, "error": str(error), "errors_total": self.errors},
            )
        return self._backoff.next_delay()
