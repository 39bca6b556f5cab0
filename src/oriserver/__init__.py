"""oriserver: the MathHelper gRPC service and its calculation event log."""

from __future__ import annotations

# The only place the version is written: pyproject.toml reads it (hatchling dynamic version).
__version__ = "0.1.0"
