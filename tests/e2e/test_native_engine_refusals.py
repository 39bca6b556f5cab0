"""The native engine refuses, at start-up, every setting it cannot honour: exit 2, one line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.servers import free_port, server_env

# What pygrpc-native cannot do (docs/serving.md): TLS, mTLS names, connection age and idle
# limits, handshake timeouts and ping policing.
# Each case: the variables set together (TLS is only valid as a whole) and the one named.
TLS = ("ORI_TLS_CERT_FILE", "ORI_TLS_KEY_FILE")
CANNOT_HONOUR = [
    (TLS, "ORI_TLS_CERT_FILE"),
    ((*TLS, "ORI_TLS_CLIENT_CA_FILE"), "ORI_TLS_CERT_FILE"),
    (("ORI_EVENTS_API_CLIENT_NAMES",), "ORI_EVENTS_API_CLIENT_NAMES"),
    (("ORI_MAX_CONNECTION_AGE_SECONDS",), "ORI_MAX_CONNECTION_AGE_SECONDS"),
    (("ORI_MAX_CONNECTION_AGE_GRACE_SECONDS",), "ORI_MAX_CONNECTION_AGE_GRACE_SECONDS"),
    (("ORI_MAX_CONNECTION_IDLE_SECONDS",), "ORI_MAX_CONNECTION_IDLE_SECONDS"),
    (("ORI_HANDSHAKE_TIMEOUT_SECONDS",), "ORI_HANDSHAKE_TIMEOUT_SECONDS"),
    (("ORI_KEEPALIVE_MIN_PING_INTERVAL_SECONDS",), "ORI_KEEPALIVE_MIN_PING_INTERVAL_SECONDS"),
]


def _value_for(name: str, tmp_path: Path) -> str:
    if name.endswith("_FILE"):
        path = tmp_path / f"{name.lower()}.pem"
        path.write_text("not used: the engine is refused first\n")
        return str(path)
    return "reader.example" if name.endswith("_NAMES") else "30"


@pytest.mark.parametrize(("names", "named"), CANNOT_HONOUR, ids=[c[1] for c in CANNOT_HONOUR])
def test_a_setting_the_native_engine_cannot_honour_stops_start_up(
    tmp_path: Path, names: tuple[str, ...], named: str
) -> None:
    env = server_env(
        {
            "ORI_SERVER_ENGINE": "native",
            "ORI_PORT": str(free_port()),
            "ORI_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
            **{name: _value_for(name, tmp_path) for name in names},
        }
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "oriserver"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "native engine" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "events.db").exists(), "start-up did work before refusing"
    assert time.monotonic() - started < 30
