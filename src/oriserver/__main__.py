"""Lets ``python -m oriserver`` behave like the ``oriserver`` command."""

from __future__ import annotations

from oriserver.cli.server_main import main

raise SystemExit(main())
