#!/usr/bin/env python3
"""Audit the shipped lock file (requirements/runtime.txt) for known vulnerabilities.

Runs pip-audit against the pinned versions (no install, no resolution) using
the package index's vulnerability data. Exit 1 if any pinned package has a
known vulnerability. When the vulnerability data cannot be reached (offline,
a proxy without the per-release JSON API), it says so plainly, lists what was
not checked, and exits 0: the audit did not run, and the output must not
suggest that it passed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = "requirements/runtime.txt"


def main() -> int:
    command = [sys.executable, "-m", "pip_audit", "-r", LOCK, "--no-deps", "--disable-pip",
               "--progress-spinner", "off", "--timeout", "10", "-f", "json"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"pip-audit: NOT RUN - could not reach the vulnerability data ({reason})")
        return 0
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if "skip_reason" in d]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    audited = len(dependencies) - len(skipped)
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            print(
                f"pip-audit: {dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixes})"
            )
    if skipped:
        names = ", ".join(sorted(d["name"] for d in skipped))
        print(f"pip-audit: NOT CHECKED - {len(skipped)} of {len(dependencies)} pinned packages in {LOCK}: "
              f"the package index did not serve their vulnerability data from here ({names})")  # fmt: skip
    if vulnerable:
        print(f"pip-audit: FAILED - {len(vulnerable)} vulnerable package(s) in {LOCK}")
        return 1
    if audited:
        print(f"pip-audit: {audited} pinned package(s) in {LOCK} have no known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
