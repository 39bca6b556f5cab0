"""Certificate rotation: new connections get the files on disk, without a restart.

Files are replaced the way a renewal replaces them (a new file renamed over the old
one), and every check opens its own connection (a channel with a local subchannel
pool), so a connection left from an earlier check cannot answer for it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from tests.security.pki import Authority, Leaf, Pki
from tests.security.test_tls import credentials, refused, summation
from tests.support.servers import ServerThread

StartServer = Callable[[Mapping[str, str]], ServerThread]


@contextmanager
def fresh_channel(
    server: ServerThread, ca: Authority, client: Leaf | None = None
) -> Iterator[grpc.Channel]:
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.secure_channel(
        server.target, credentials(ca.cert_file, client), options=options
    ) as channel:
        yield channel


def replace(source: Path, target: Path) -> None:
    """Swap the file in at once, as a renewal does: readers see the old or the new one."""
    staging = target.with_suffix(".new")
    shutil.copy(source, staging)
    os.replace(staging, target)


def server_leaf(ca: Authority) -> Leaf:
    return ca.issue("server", server=True, dns=("localhost",), ips=("127.0.0.1",))


@pytest.fixture
def files(tmp_path: Path, pki: Pki) -> dict[str, Path]:
    """The server's certificate files in a folder of their own (the shared PKI stays intact)."""
    folder = tmp_path / "tls"
    folder.mkdir()
    paths = {"cert": folder / "tls.crt", "key": folder / "tls.key", "client_ca": folder / "ca.crt"}
    shutil.copy(pki.server.cert_file, paths["cert"])
    shutil.copy(pki.server.key_file, paths["key"])
    shutil.copy(pki.ca.cert_file, paths["client_ca"])
    return paths


def env_for(files: Mapping[str, Path], *, mutual: bool = False) -> dict[str, str]:
    env = {"ORI_TLS_CERT_FILE": str(files["cert"]), "ORI_TLS_KEY_FILE": str(files["key"])}
    if mutual:
        env["ORI_TLS_CLIENT_CA_FILE"] = str(files["client_ca"])
    return env


def test_new_connections_get_a_renewed_certificate_without_a_restart(
    server_with: StartServer, files: dict[str, Path], pki: Pki, tmp_path: Path
) -> None:
    server = server_with(env_for(files))
    with fresh_channel(server, pki.ca) as before:
        assert summation(before) == 42
        renewed_by = Authority.create("renewed", tmp_path / "renewed")
        renewed = server_leaf(renewed_by)
        replace(renewed.cert_file, files["cert"])
        replace(renewed.key_file, files["key"])
        with fresh_channel(server, renewed_by) as channel:
            assert summation(channel) == 42
        with fresh_channel(server, pki.ca) as channel:
            refused(channel)  # the old certificate is no longer presented
        # A connection opened before the renewal keeps working.
        assert summation(before) == 42


def test_an_unusable_renewal_keeps_the_previous_certificate_and_says_why(
    server_with: StartServer,
    files: dict[str, Path],
    pki: Pki,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_with(env_for(files))
    renewed_by = Authority.create("renewed", tmp_path / "renewed")
    renewed = server_leaf(renewed_by)
    caplog.set_level(logging.WARNING, logger="oriserver.tls")
    replace(renewed.cert_file, files["cert"])  # the key is not renewed yet: they do not match
    with fresh_channel(server, pki.ca) as channel:
        assert summation(channel) == 42
    warnings = [r for r in caplog.records if r.name == "oriserver.tls"]
    assert warnings, "the unusable renewal was not logged"
    assert "does not match" in warnings[0].problem  # type: ignore[attr-defined]
    replace(renewed.key_file, files["key"])  # the renewal completes
    with fresh_channel(server, renewed_by) as channel:
        assert summation(channel) == 42


def test_a_renewed_client_ca_decides_which_client_certificates_are_accepted(
    server_with: StartServer, files: dict[str, Path], pki: Pki
) -> None:
    server = server_with(env_for(files, mutual=True))
    with fresh_channel(server, pki.ca, pki.client) as channel:
        assert summation(channel) == 42
    replace(pki.other_ca.cert_file, files["client_ca"])
    with fresh_channel(server, pki.ca, pki.other_client) as channel:
        assert summation(channel) == 42
    with fresh_channel(server, pki.ca, pki.client) as channel:
        refused(channel)
