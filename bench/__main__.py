"""Lets ``python -m bench`` run the benchmark command (``scripts/bench`` calls it)."""

from __future__ import annotations

from bench.cli import main

raise SystemExit(main())
