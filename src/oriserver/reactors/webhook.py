"""POSTs a JSON notification with retries, backoff and an idempotency key.

The standard library's urllib is enough for one JSON POST; the retry policy is
ours: 2xx is delivered; 408, 429 and 5xx, timeouts and connection errors are
retried; other 4xx mean the receiver rejects this payload for good.
"""

from __future__ import annotations

import enum
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from oriserver.recording.backoff import Backoff

log = logging.getLogger("oriserver.reactors.webhook")

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"  # permanent: the receiver said no
    FAILED = "failed"  # every attempt failed; try again later


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    attempts: int
    detail: str


class WebhookClient:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        max_attempts: int,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._sleep = sleep

    def deliver(
        self,
        payload: dict[str, object],
        idempotency_key: str,
        before_retry: Callable[[int, str], bool],
    ) -> Delivery:
        """Try up to max_attempts times; ``before_retry(attempt, reason)`` may veto a retry."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._backoff.reset()
        detail = ""
        for attempt in range(1, self._max_attempts + 1):
            status, detail = self._post(body, idempotency_key)
            if status is not None and 200 <= status < 300:
                return Delivery(Outcome.DELIVERED, attempt, detail)
            if status is not None and status not in RETRYABLE_STATUSES:
                return Delivery(Outcome.REJECTED, attempt, detail)
            if attempt == self._max_attempts or not before_retry(attempt, detail):
                break
            self._sleep(self._backoff.next_delay())
        return Delivery(Outcome.FAILED, attempt, detail)

    def _post(self, body: bytes, idempotency_key: str) -> tuple[int | None, str]:
        request = urllib.request.Request(  # noqa: S310 - the URL is validated as http(s) in settings
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key,
                "User-Agent": "oriserver-webhook",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
                return int(response.status), f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            return int(error.code), f"HTTP {error.code}"
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            return None, f"{type(error).__name__}: {reason}"
