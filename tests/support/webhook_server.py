"""A real HTTP server that records webhook POSTs and can fail on purpose."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    body: dict[str, object]
    idempotency_key: str | None
    content_type: str | None


@dataclass
class WebhookReceiver:
    """Answers ``fail_first`` requests with ``fail_status``, then 204s."""

    fail_first: int = 0
    fail_status: int = 503
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered_keys(self) -> list[str | None]:
        with self.lock:
            return [r.idempotency_key for r in self.received]


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            with receiver.lock:
                receiver.attempts += 1
                failing = receiver.attempts <= receiver.fail_first
                if not failing:
                    receiver.received.append(
                        Received(
                            body,
                            self.headers.get("Idempotency-Key"),
                            self.headers.get("Content-Type"),
                        )
                    )
            self.send_response(receiver.fail_status if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextmanager
def webhook_receiver(fail_first: int = 0, fail_status: int = 503) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(fail_first=fail_first, fail_status=fail_status)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/ori"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
