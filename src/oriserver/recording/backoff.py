"""Exponential backoff with full jitter, and a rate limiter for repeated warnings."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays that double from ``base`` up to ``cap``; ``reset`` after a success."""

    base: float = 0.05
    cap: float = 5.0
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        # Full jitter spreads replicas' retries so they do not hit a recovering database together.
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class RateLimit:
    """Allows one event per ``every`` seconds and counts the ones it suppressed."""

    every: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _last: float = field(default=float("-inf"))
    suppressed: int = 0

    def allow(self) -> bool:
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        count, self.suppressed = self.suppressed, 0
        return count
