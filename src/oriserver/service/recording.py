"""How the service layer hands a calculation's record to the event store."""

from __future__ import annotations

from typing import Protocol

from oriserver.service.calls import CallRecord


class Recorder(Protocol):
    """Accepts one record per calculation call.

    In async durability mode ``record`` returns once the record is buffered (or
    counted as dropped); in sync mode it returns once the call's events are
    committed and raises RecordingUnavailable when they cannot be, in time:
    within the store's timeout, and before ``patience_s`` (the caller's
    deadline) runs out. A record given up on is withdrawn where it still can be.
    """

    records: bool  # False when nothing is kept, so callers can skip building records

    def record(self, call: CallRecord, patience_s: float | None = None) -> None: ...


class NullRecorder:
    """Used when ORI_EVENTS_ENABLED=false: nothing is recorded."""

    records = False

    def record(self, call: CallRecord, patience_s: float | None = None) -> None:
        return None
