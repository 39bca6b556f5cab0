"""A real HTTP server that records webhook requests and can fail, redirect or hang on purpose."""

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


@dataclass(frozen=True)
class Seen:
    """Any request at all, accepted or not: how it came and where it went."""

    method: str
    path: str
    idempotency_key: str | None


@dataclass
class WebhookReceiver:
    """Answers ``fail_first`` POSTs with ``fail_status`` (with ``location`` as the Location
    header, for redirects), or with no answer at all while ``hang`` is set; then 204s.

    Any other method gets 200, as a web page would: a redirect followed as a GET
    looks like a success to the sender, which is how notifications got lost."""

    fail_first: int = 0
    fail_status: int = 503
    location: str | None = None
    hang: threading.Event = field(default_factory=threading.Event)
    received: list[Received] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    attempts: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)

    def delivered_keys(self) -> list[str | None]:
        with self.lock:
            return [r.idempotency_key for r in self.received]

    def requests(self) -> list[Seen]:
        with self.lock:
            return list(self.seen)


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            with receiver.lock:
                receiver.seen.append(
                    Seen(self.command, self.path, self.headers.get("Idempotency-Key"))
                )

        def _answer(self, status: int, location: str | None = None) -> None:
            self.send_response(status)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            self._record()
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            if receiver.hang.is_set():
                receiver.closing.wait(60)  # hold the request open, never answer
                return
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
            if failing:
                self._answer(receiver.fail_status, receiver.location)
            else:
                self._answer(204)

        def _any_other_method(self) -> None:
            self._record()
            self._answer(200)

        def do_GET(self) -> None:
            self._any_other_method()

        def do_HEAD(self) -> None:
            self._any_other_method()

        def do_PUT(self) -> None:
            self._any_other_method()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextmanager
def webhook_receiver(
    fail_first: int = 0, fail_status: int = 503, location: str | None = None
) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(fail_first=fail_first, fail_status=fail_status, location=location)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/ori"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.closing.set()
        server.shutdown()
        server.server_close()
