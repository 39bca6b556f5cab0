"""Lets ``python -m oriserver`` behave like the ``oriserver`` command."""

from __future__ import annotations

from oriserver.cli.server_main import main

# Guarded so that tools which import a program's main module again (multiprocessing's
# "spawn", for one) do not start a second server.
if __name__ == "__main__":
    raise SystemExit(main())
