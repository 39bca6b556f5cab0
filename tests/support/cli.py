"""Runs the real ``ori`` command in a subprocess, with only the ORI_* variables given."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

from harness.servers import server_env

ORI = "from oriserver.cli.client_main import main; raise SystemExit(main())"


def ori(
    *args: str, port: int | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = server_env(env or {})
    environment.pop("ORI_LISTEN_HOST", None)
    if port is not None:
        environment["ORI_PORT"] = str(port)
    return subprocess.run(
        [sys.executable, "-c", ORI, *args],
        env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
