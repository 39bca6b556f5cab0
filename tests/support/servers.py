"""Real oriserver instances in this process, built by the composition root.

Subprocess servers come from the one launcher, ``harness/servers.py``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from oriserver.bootstrap import ServerApp, build_server
from oriserver.config import Settings


class ServerThread:
    """A real server built by the composition root (build_server) in this process.

    The name is historical: the server runs on its engine's own threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app: ServerApp | None = None

    def start(self) -> ServerThread:
        self.app = build_server(self.settings)
        self.app.start()
        return self

    @property
    def port(self) -> int:
        assert self.app is not None
        return self.app.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float = 1.0) -> int:
        if self.app is None:
            return 0
        app, self.app = self.app, None
        return app.stop(grace)


@contextlib.contextmanager
def running_server(settings: Settings) -> Iterator[ServerThread]:
    server = ServerThread(replace(settings, port=0, listen_host="127.0.0.1")).start()
    try:
        yield server
    finally:
        server.stop()
