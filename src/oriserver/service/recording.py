"""How the service layer hands a calculation's two events to the event store."""

from __future__ import annotations

from typing import Protocol

from oriserver.domain.events import CalculationRequested, Event


class Recorder(Protocol):
    """Accepts the request event and its outcome, always together.

    In async durability mode ``record`` returns once the pair is buffered (or
    counted as dropped); in sync mode it returns once both are committed and
    raises RecordingUnavailable when they cannot be.
    """

    records: bool  # False when nothing is kept, so callers can skip building events

    async def record(self, requested: CalculationRequested, outcome: Event) -> None: ...


class NullRecorder:
    """Used when ORI_EVENTS_ENABLED=false: nothing is recorded."""

    records = False

    async def record(self, requested: CalculationRequested, outcome: Event) -> None:
        return None
