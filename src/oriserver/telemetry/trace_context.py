"""The current RPC's trace id, set by the tracing wrapper and read where events are built.

Kept apart from tracing.py so that reading it never imports OpenTelemetry.
"""

from __future__ import annotations

from contextvars import ContextVar

current_trace_id: ContextVar[str | None] = ContextVar("current_trace_id", default=None)
