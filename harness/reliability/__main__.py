"""Lets ``python -m harness.reliability`` run the reliability scenarios (``scripts/reliability``)."""

from __future__ import annotations

from harness.reliability.cli import main

raise SystemExit(main())
