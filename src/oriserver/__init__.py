"""oriserver: the MathHelper gRPC service and its calculation event log."""

from __future__ import annotations

__version__ = "0.1.0"
