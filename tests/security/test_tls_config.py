"""TLS misconfiguration stops the server and ``ori`` with exit 2 and one line naming the culprit."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.servers import free_port, server_env
from tests.security.conftest import run_ori
from tests.security.pki import Pki

# Each case: (variables given, the variable the message must name, words it must contain).
Case = Callable[[Pki, Path], tuple[dict[str, str], str, str]]


def _junk(folder: Path) -> str:
    path = folder / "junk.pem"
    path.write_text("this is not a certificate\n")
    return str(path)


def _der(folder: Path) -> str:
    path = folder / "binary.der"
    path.write_bytes(bytes(range(256)))
    return str(path)


SERVER_CASES: dict[str, Case] = {
    "missing certificate file": lambda p, d: (
        {"ORI_TLS_CERT_FILE": str(d / "nope.pem"), "ORI_TLS_KEY_FILE": str(p.server.key_file)},
        "ORI_TLS_CERT_FILE",
        "no such file",
    ),
    "key path is a directory": lambda p, d: (
        {"ORI_TLS_CERT_FILE": str(p.server.cert_file), "ORI_TLS_KEY_FILE": str(d)},
        "ORI_TLS_KEY_FILE",
        "no such file",
    ),
    "certificate without key": lambda p, _d: (
        {"ORI_TLS_CERT_FILE": str(p.server.cert_file)},
        "ORI_TLS_KEY_FILE",
        "half configured",
    ),
    "key without certificate": lambda p, _d: (
        {"ORI_TLS_KEY_FILE": str(p.server.key_file)},
        "ORI_TLS_CERT_FILE",
        "half configured",
    ),
    "client CA without server TLS": lambda p, _d: (
        {"ORI_TLS_CLIENT_CA_FILE": str(p.ca.cert_file)},
        "ORI_TLS_CLIENT_CA_FILE",
        "needs ORI_TLS_CERT_FILE",
    ),
    "key of another certificate": lambda p, _d: (
        {"ORI_TLS_CERT_FILE": str(p.server.cert_file), "ORI_TLS_KEY_FILE": str(p.client.key_file)},
        "ORI_TLS_KEY_FILE",
        "does not match the certificate",
    ),
    "encrypted key": lambda p, _d: (
        {
            "ORI_TLS_CERT_FILE": str(p.server.cert_file),
            "ORI_TLS_KEY_FILE": str(p.server.encrypted_key_file()),
        },
        "ORI_TLS_KEY_FILE",
        "encrypted",
    ),
    "certificate file holding a key": lambda p, _d: (
        {"ORI_TLS_CERT_FILE": str(p.server.key_file), "ORI_TLS_KEY_FILE": str(p.server.key_file)},
        "ORI_TLS_CERT_FILE",
        "holds no PEM certificate",
    ),
    "key file holding a certificate": lambda p, _d: (
        {"ORI_TLS_CERT_FILE": str(p.server.cert_file), "ORI_TLS_KEY_FILE": str(p.server.cert_file)},
        "ORI_TLS_KEY_FILE",
        "holds no PEM private key",
    ),
    "client CA that is not PEM": lambda p, d: (
        {**_server_pair(p), "ORI_TLS_CLIENT_CA_FILE": _junk(d)},
        "ORI_TLS_CLIENT_CA_FILE",
        "holds no PEM certificate",
    ),
    "client CA in binary DER": lambda p, d: (
        {**_server_pair(p), "ORI_TLS_CLIENT_CA_FILE": _der(d)},
        "ORI_TLS_CLIENT_CA_FILE",
        "is not a PEM file",
    ),
}


def _server_pair(pki: Pki) -> dict[str, str]:
    return {
        "ORI_TLS_CERT_FILE": str(pki.server.cert_file),
        "ORI_TLS_KEY_FILE": str(pki.server.key_file),
    }


def _assert_one_line_usage_error(result: subprocess.CompletedProcess[str], prefix: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(prefix), result.stderr


@pytest.mark.parametrize("case", SERVER_CASES, ids=str)
def test_the_server_refuses_to_start_on_a_tls_misconfiguration(
    case: str, pki: Pki, tmp_path: Path
) -> None:
    env, name, words = SERVER_CASES[case](pki, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "oriserver"],
        env=server_env({"ORI_PORT": str(free_port()), **env}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _assert_one_line_usage_error(result, f"oriserver: configuration error: {name}: ")
    assert words in result.stderr


ORI_CASES: dict[str, Case] = {
    "missing CA file flag": lambda _p, d: (
        {"--ca-file": str(d / "nope.pem")},
        "--ca-file",
        "no such file",
    ),
    "missing CA file variable": lambda _p, d: (
        {"ORI_TLS_CA_FILE": str(d / "nope.pem")},
        "ORI_TLS_CA_FILE",
        "no such file",
    ),
    "CA file that is not PEM": lambda _p, d: (
        {"--ca-file": _junk(d)},
        "--ca-file",
        "holds no PEM certificate",
    ),
    "certificate without key": lambda p, _d: (
        {"--cert-file": str(p.client.cert_file)},
        "--cert-file",
        "needs --key-file",
    ),
    "key without certificate in the environment": lambda p, _d: (
        {"ORI_TLS_CLIENT_KEY_FILE": str(p.client.key_file)},
        "ORI_TLS_CLIENT_KEY_FILE",
        "needs --cert-file or ORI_TLS_CLIENT_CERT_FILE",
    ),
    "key of another certificate": lambda p, _d: (
        {"--cert-file": str(p.client.cert_file), "--key-file": str(p.other_client.key_file)},
        "--key-file",
        "does not match the certificate",
    ),
    "encrypted key": lambda p, _d: (
        {"--cert-file": str(p.client.cert_file), "--key-file": str(p.client.encrypted_key_file())},
        "--key-file",
        "encrypted",
    ),
    "ORI_TLS that is not a boolean": lambda _p, _d: (
        {"ORI_TLS": "maybe"},
        "ORI_TLS",
        "must be true or false",
    ),
    "--no-tls with a CA file": lambda p, _d: (
        {"--no-tls": "", "--ca-file": str(p.ca.cert_file)},
        "--no-tls",
        "contradicts --ca-file",
    ),
}


@pytest.mark.parametrize("case", ORI_CASES, ids=str)
def test_ori_refuses_a_tls_misconfiguration_before_connecting(
    case: str, pki: Pki, tmp_path: Path
) -> None:
    given, name, words = ORI_CASES[case](pki, tmp_path)
    flags = [
        part
        for flag, value in given.items()
        if flag.startswith("--")
        for part in (flag, value)
        if part
    ]
    env = {k: v for k, v in given.items() if not k.startswith("--")}
    # Nothing listens on this port: a connection attempt would end in exit 1, not 2.
    result = run_ori("--port", str(free_port()), *flags, "health", env=env)
    _assert_one_line_usage_error(result, f"ori: configuration error: {name}: ")
    assert words in result.stderr
