"""The one Python load generator: threads in a closed loop (``Load``), a measured window of it
(``LoadSpec``, ``run_load``), and several processes of it started together (``LoadProcesses``)."""

from __future__ import annotations

from harness.load.procs import LoadFailed, LoadProcesses, run_processes
from harness.load.spec import LoadSpec, run_load
from harness.load.stats import LoadResult, merge
from harness.load.threads import ANSWERED, MIXES, Call, Load, call_once, channel

__all__ = [
    "ANSWERED",
    "MIXES",
    "Call",
    "Load",
    "LoadFailed",
    "LoadProcesses",
    "LoadResult",
    "LoadSpec",
    "call_once",
    "channel",
    "merge",
    "run_load",
    "run_processes",
]
