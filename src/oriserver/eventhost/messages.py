"""The typed messages between a server process and its event host.

Frozen dataclasses, pickled over a socket pair by ``ProcessHost``, or passed
as they are to an in-process ``EventHost``: both sides of the boundary speak
only these. Every reply carries the host's latest statistics, so the server's
metrics are one hop behind at most.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from oriserver.reactors.watchlist import ReactorStats
from oriserver.service.calls import CallRecord
from oriserver.service.projection import ProjectionStats


@dataclass(frozen=True, slots=True)
class HostStats:
    projection: ProjectionStats = field(default_factory=ProjectionStats)
    reactor: ReactorStats | None = None
    projected_on_write: int = 0  # batches folded in their own transaction


@dataclass(frozen=True, slots=True)
class AppendCalls:
    """Store these call records (two events each). ``origin`` and ``first_seq`` name them,
    so that the same batch sent again derives the same event ids (store/rows.py)."""

    origin: int
    first_seq: int
    records: list[CallRecord]


@dataclass(frozen=True, slots=True)
class Ping:
    """Check that the store answers and its schema is current."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the projection and the reactor, close the store, exit."""


Request = AppendCalls | Ping | Stop


@dataclass(frozen=True, slots=True)
class Done:
    """The request succeeded; for an append, ``stored`` events (duplicates skipped)."""

    stats: HostStats
    stored: int = 0
    head: int = 0


class Refusal(enum.Enum):
    UNAVAILABLE = "unavailable"  # the database cannot be reached; retrying may help
    SCHEMA = "schema"  # reachable, but the schema is not the one this code needs
    ERROR = "error"  # the store refused the request


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal
    message: str
    stats: HostStats


Reply = Done | Refused
