"""The Markdown the script prints: a header naming the machine, one table, then every check."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import grpc

from harness.reliability.verdict import Result

RECOVERY_NOTE = (
    "Recovery is measured from the end of the fault (the proxy healed, the old process exited, "
    "the worker was killed, the last call of the burst ended) to what the cell names."
)


def header(command: str, postgres: str, options: str) -> list[str]:
    return [
        "## Reliability run",
        "",
        f"- command: `{command}`",
        f"- when: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}; {load_average()} at the start",
        f"- PostgreSQL: {postgres}",
        f"- options: {options}",
    ]


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _rps(result: Result) -> str:
    held = f"{result.held_rps:.0f}"
    return f"{held} of {result.offered_rps:.0f}" if result.offered_rps else held


def _errors(result: Result) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(result.errors.items())) or "0"


def table(results: Sequence[Result]) -> list[str]:
    lines = [
        "| scenario | load held (rps) | client errors | events expected / stored | recovery | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        verdict = "pass" if r.passed else "**FAIL**"
        lines.append(
            f"| {r.scenario} | {_rps(r)} | {_errors(r)} | {r.events_expected} / "
            f"{r.events_stored} | {r.recovery} | {verdict} |"
        )
    return lines


def details(results: Sequence[Result]) -> list[str]:
    lines = ["", RECOVERY_NOTE, "", "### Checks", ""]
    for r in results:
        lines.append(f"- **{r.scenario}** ({'pass' if r.passed else 'FAIL'})")
        lines.extend(
            f"  - {'ok' if c.passed else '**FAIL**'}: {c.name}: {c.detail}" for c in r.checks
        )
        lines.extend(f"  - note: {note}" for note in r.notes)
        lines.extend(f"  - first {code} said: {text}" for code, text in r.error_details.items())
    return lines


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
