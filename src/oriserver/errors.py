"""Errors the adapters raise in the project's own terms, whatever the driver said."""

from __future__ import annotations


class StoreError(Exception):
    """The event store failed; the message is safe to show and to log."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the connection; retrying may help."""


class SchemaNotReady(StoreUnavailable):
    """The database is reachable but its schema is not at the version this code needs."""


class RecordingUnavailable(Exception):
    """In sync durability mode, the events of a call could not be committed."""
