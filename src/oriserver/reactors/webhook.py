"""POSTs a JSON notification with retries, backoff and an idempotency key.

The standard library's urllib is enough for one JSON POST; the retry policy is
ours. A 2xx is delivered. A 4xx other than 408, 425 and 429 means the receiver
rejects this payload for good. Everything else is a failed attempt, retried:
every 5xx (a broken receiver, not a bad payload: a 501 or 505 is fixed on the
receiver's side, and retrying loses nothing while dead-lettering would), every
3xx, timeouts and connection errors. Redirects are never followed: urllib would
turn a 302 into a GET without the body and send it, Idempotency-Key included,
to any host the Location names, so the configured URL is the only place a
notification goes.
"""

from __future__ import annotations

import enum
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from oriserver.recording.backoff import Backoff

log = logging.getLogger("oriserver.reactors.webhook")

RETRIED_4XX = frozenset({408, 425, 429})  # timeout, too early, too many requests


def is_rejection(status: int) -> bool:
    """Whether the receiver refuses this payload for good (it is then dead-lettered)."""
    return 400 <= status < 500 and status not in RETRIED_4XX


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"  # permanent: the receiver said no
    FAILED = "failed"  # every attempt failed; try again later


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    attempts: int
    detail: str


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every 3xx into an HTTPError, which the retry policy counts as a failure."""

    def redirect_request(self, *_request_and_response: object) -> None:
        return None


class WebhookClient:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        max_attempts: int,
        backoff: Backoff | None = None,
    ) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def deliver(
        self,
        payload: Mapping[str, object],
        idempotency_key: str,
        before_retry: Callable[[int, str, float], bool],
    ) -> Delivery:
        """Try up to max_attempts times. After a failed attempt ``before_retry(attempt,
        reason, delay)`` waits ``delay`` seconds and returns False to give up early."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._backoff.reset()
        detail = ""
        for attempt in range(1, self._max_attempts + 1):
            status, detail = self._post(body, idempotency_key)
            if status is not None and 200 <= status < 300:
                return Delivery(Outcome.DELIVERED, attempt, detail)
            if status is not None and is_rejection(status):
                return Delivery(Outcome.REJECTED, attempt, detail)
            if attempt == self._max_attempts:
                break
            if not before_retry(attempt, detail, self._backoff.next_delay()):
                break
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
            with self._opener.open(request, timeout=self._timeout_s) as response:
                return int(response.status), f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            error.close()
            if 300 <= error.code < 400:
                return int(error.code), f"HTTP {error.code}, a redirect (never followed)"
            return int(error.code), f"HTTP {error.code}"
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            return None, f"{type(error).__name__}: {reason}"
