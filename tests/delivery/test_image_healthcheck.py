"""The image's HEALTHCHECK, as the Dockerfile writes it, run against real servers.

It runs in the container's environment, which the Dockerfile's comment describes: plaintext
by default, TLS when the container also has the client variables (ORI_TLS_CA_FILE, and
ORI_TLS_SERVER_NAME for a certificate that does not name localhost).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from oriserver.config import load_settings
from tests.delivery.tools import ROOT, dockerfile_stages, exec_form, find_tool
from tests.security.pki import Authority
from tests.support.servers import running_server


def healthcheck_command() -> list[str]:
    final = dockerfile_stages(ROOT / "Dockerfile")[-1]
    (healthcheck,) = [i.arguments for i in final if i.keyword == "HEALTHCHECK"]
    _, _, command = healthcheck.partition("CMD ")
    return exec_form(command)


def check(port: int, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """The HEALTHCHECK command, with only the container's variables set."""
    command = healthcheck_command()
    return subprocess.run(
        [find_tool(command[0]), *command[1:]],
        env={"PATH": "/usr/bin:/bin", "ORI_PORT": str(port), **env},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def server_env(tmp_path: Path) -> dict[str, str]:
    return {"ORI_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}", "ORI_METRICS_PORT": "0"}


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create("container", tmp_path / "ca")


def tls_server_env(tmp_path: Path, authority: Authority, *names: str) -> dict[str, str]:
    leaf = authority.issue("server", server=True, dns=names)
    return {
        **server_env(tmp_path),
        "ORI_TLS_CERT_FILE": str(leaf.cert_file),
        "ORI_TLS_KEY_FILE": str(leaf.key_file),
    }


def test_it_passes_against_a_plaintext_server_with_no_variables(tmp_path: Path) -> None:
    with running_server(load_settings(server_env(tmp_path))) as server:
        result = check(server.port, {})
    assert (result.returncode, result.stdout) == (0, "SERVING\n"), result.stderr


def test_it_speaks_tls_when_the_container_has_the_client_variables(
    tmp_path: Path, authority: Authority
) -> None:
    env = tls_server_env(tmp_path, authority, "localhost")
    with running_server(load_settings(env)) as server:
        without = check(server.port, env)
        with_ca = check(server.port, {**env, "ORI_TLS_CA_FILE": str(authority.cert_file)})
    # The server's own variables do not make the check speak TLS; the client's do.
    assert without.returncode == 1
    assert without.stderr.startswith("ori: UNAVAILABLE")
    assert (with_ca.returncode, with_ca.stdout) == (0, "SERVING\n"), with_ca.stderr


def test_a_certificate_for_another_name_needs_the_server_name_variable(
    tmp_path: Path, authority: Authority
) -> None:
    env = {
        **tls_server_env(tmp_path, authority, "oriserver"),
        "ORI_TLS_CA_FILE": str(authority.cert_file),
    }
    with running_server(load_settings(env)) as server:
        without = check(server.port, env)
        named = check(server.port, {**env, "ORI_TLS_SERVER_NAME": "oriserver"})
    assert without.returncode == 1
    assert "Hostname Verification" in without.stderr
    assert (named.returncode, named.stdout) == (0, "SERVING\n"), named.stderr


def test_the_dockerfile_comment_says_what_these_tests_show() -> None:
    text = (ROOT / "Dockerfile").read_text()
    comment = text.split("HEALTHCHECK ", 1)[0].rsplit("\n\n", 1)[1]
    for variable in ("ORI_TLS_CA_FILE", "ORI_TLS_SERVER_NAME"):
        assert variable in comment
    assert "tests/delivery/test_image_healthcheck.py" in comment
