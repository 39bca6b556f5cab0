"""A TCP proxy that can cut, delay or blackhole connections on command.

Placed between the server and PostgreSQL, it turns "the database went away"
into something a test can switch on and off. It listens on loopback only and
forwards to a TCP address or a Unix socket (pgserver listens on one).

Written by hand: the proxies on PyPI (toxiproxy needs its own server binary) cannot hold a
connection open while forwarding nothing, which is the stall the scenarios need.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from harness.postgres import proxy_target

Target = tuple[str, int] | str
T = TypeVar("T")


class FaultProxy:
    def __init__(self, target: Target) -> None:
        self._target = target
        self._mode = "pass"
        self._delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self.port = 0
        self.connections = 0

    @classmethod
    def for_url(cls, database_url: str) -> FaultProxy:
        """A proxy (not started: use it in a ``with``) in front of the PostgreSQL in the URL;
        reach it with ``harness.postgres.proxied(database_url, proxy.port)``."""
        return cls(proxy_target(database_url))

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # -- the switches ------------------------------------------------------
    def cut(self) -> None:
        """Close every open connection and refuse new ones."""
        self._mode = "cut"
        self._loop.call_soon_threadsafe(self._close_all)

    def blackhole(self) -> None:
        """Keep connections open but forward nothing in either direction."""
        self._mode = "blackhole"

    def delay(self, seconds: float) -> None:
        """Forward everything, each chunk late by ``seconds``."""
        self._mode = "delay"
        self._delay_s = seconds

    def retarget(self, target: Target) -> None:
        """Forward new connections to ``target`` and close every open one, as a
        Service does when it moves to a new primary (the old one's connections die)."""
        self._target = target
        self._loop.call_soon_threadsafe(self._close_all)

    def heal(self) -> None:
        """Back to a transparent proxy (connections cut earlier stay closed)."""
        self._mode = "pass"
        self._delay_s = 0.0

    def close(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(TimeoutError, RuntimeError):
                self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _shutdown(self) -> None:
        """Stop listening, close every connection and end every pump, so none is left pending."""
        if self._server is not None:
            self._server.close()
        self._close_all()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the plumbing ------------------------------------------------------
    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._mode == "cut":
            writer.close()
            return
        try:
            target = self._target
            if isinstance(target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(target)
            else:
                up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        # Cancelled when the proxy shuts down: end quietly. (asyncio's stream protocol asks a
        # finished handler task for its exception, and a cancelled one would print a traceback.)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self._mode == "blackhole":
                    continue
                if self._mode == "cut":
                    break
                if self._mode == "delay":
                    await asyncio.sleep(self._delay_s)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)


@contextlib.contextmanager
def fault_proxy(target: Target) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target).start()
    try:
        yield proxy
    finally:
        proxy.close()
