"""Recorders: the service layer's view of the writer, for each durability mode."""

from __future__ import annotations

import asyncio

from oriserver.domain.events import CalculationRequested, Event
from oriserver.recording.writer import BatchingWriter, Notifier, Waiter


class BufferedRecorder:
    """async durability: hand the events to the writer and return at once."""

    records = True

    def __init__(self, writer: BatchingWriter) -> None:
        self._writer = writer

    async def record(self, requested: CalculationRequested, outcome: Event) -> None:
        self._writer.submit(requested, outcome)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the RPC was cancelled while waiting
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class CommittedRecorder:
    """sync durability: return only after the events are committed; raise otherwise."""

    records = True

    def __init__(self, writer: BatchingWriter) -> None:
        self._writer = writer

    async def record(self, requested: CalculationRequested, outcome: Event) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def waiter(error: BaseException | None) -> None:
            _settle(future, error)

        self._writer.submit(requested, outcome, waiter)
        await future


def loop_notifier(loop: asyncio.AbstractEventLoop) -> Notifier:
    """A writer Notifier that completes a whole batch's waiters in one loop callback."""

    def notify(waiters: list[Waiter], error: BaseException | None) -> None:
        def run() -> None:
            for waiter in waiters:
                waiter(error)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop has closed; nobody is waiting any more
            return

    return notify
