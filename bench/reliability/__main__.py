"""Lets ``python -m bench.reliability`` run the reliability scenarios (``scripts/reliability``)."""

from __future__ import annotations

from bench.reliability.cli import main

raise SystemExit(main())
