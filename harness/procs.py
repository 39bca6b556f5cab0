"""Child processes that cannot outlive the benchmark, and their CPU time read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Runs in the child before exec: the kernel sends SIGKILL when the benchmark dies, even by SIGKILL.
_GUARD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"  # PR_SET_PDEATHSIG
    "os.getppid() == int(sys.argv[1]) or os._exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def spawn(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start argv (argv[0] an absolute path) in its own process group, tied to our life.

    The kernel ties the child to the calling thread: call this from a thread that outlives it.
    """
    guarded = [sys.executable, "-c", _GUARD, str(os.getpid()), *argv]
    return subprocess.Popen(guarded, start_new_session=True, **popen)


def stop_group(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> int | None:
    """SIGTERM the process group, wait up to grace_s, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    code: int | None = None
    with contextlib.suppress(subprocess.TimeoutExpired):
        code = process.wait(grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
    return code


def machine_busy_cpu() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """root and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat(int(name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def tree_cpu(root: int) -> tuple[float, int]:
    """User+system CPU seconds of root and its descendants, and how many processes that is."""
    total_ticks, count = 0, 0
    for pid in process_tree(root):
        fields = _stat(pid)
        if fields is not None:
            total_ticks += int(fields[11]) + int(fields[12])  # utime, stime
            count += 1
    return total_ticks / CLOCK_TICKS, count
