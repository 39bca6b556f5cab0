"""Server TLS credentials from the settings' PEM files (mTLS when a client CA is set).

Certificates are rotated without a restart: grpc asks ``CertificateFiles.fetch``
before each new connection's handshake (grpc.dynamic_ssl_server_credentials), and
it re-reads the files only when one of them changed (a stat per connection). A
renewal that cannot be used (a half-written file, a key that does not match) is
logged and the previous certificate stays in use until the files change again.
Connections already open keep the certificate they began with. Written here
because grpc provides the hook but not the file watching.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import grpc

from oriserver.config.env import ConfigError
from oriserver.config.transport import (
    TLS_CERT,
    TLS_CLIENT_CA,
    TLS_KEY,
    TlsSettings,
    check_certificates,
    check_key_pair,
)
from oriserver.recording.backoff import RateLimit

log = logging.getLogger("oriserver.tls")

Signature = tuple[tuple[int, int, int], ...]  # (inode, size, mtime_ns) per file


@dataclass(frozen=True)
class _Material:
    key: bytes
    cert: bytes
    client_ca: bytes | None

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.cert)], root_certificates=self.client_ca
        )


class CertificateFiles:
    """The TLS files, re-read for new connections whenever they change on disk."""

    def __init__(self, tls: TlsSettings) -> None:
        if tls.cert_file is None or tls.key_file is None:
            raise ValueError("TLS is not configured")
        self._cert, self._key, self._client_ca = tls.cert_file, tls.key_file, tls.client_ca_file
        self._paths = tuple(p for p in (self._cert, self._key, self._client_ca) if p is not None)
        self._lock = threading.Lock()  # grpc may call fetch from several threads
        self._warnings = RateLimit(60.0)
        self._signature = self._stat()
        self._rejected: Signature | None = None  # files found unusable; tried again once changed
        self._material = self._read()
        self.reloads = 0

    def _stat(self) -> Signature:
        stats = [os.stat(path) for path in self._paths]  # follows a Secret volume's symlinks
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def _read(self) -> _Material:
        ca = self._client_ca.read_bytes() if self._client_ca is not None else None
        return _Material(self._key.read_bytes(), self._cert.read_bytes(), ca)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._material.configuration(),
            # grpc documents None as "unchanged"; its type stubs leave None out.
            cast("Callable[[], grpc.ServerCertificateConfiguration]", self.fetch),
            require_client_authentication=self._client_ca is not None,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's hook: a new configuration when the files changed, else None (keep it)."""
        with self._lock:
            try:
                return self._reload_if_changed()
            except Exception as error:  # noqa: BLE001 - an error here would fail the handshake
                self._warn(f"{type(error).__name__}: {error}")
                return None

    def _reload_if_changed(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            before = self._stat()
        except OSError as error:
            self._warn(f"cannot read {error.filename}: {error.strerror}")
            return None
        if before in (self._signature, self._rejected):
            return None
        try:
            check_key_pair(self._cert, self._key, TLS_CERT, TLS_KEY)
            if self._client_ca is not None:
                check_certificates(self._client_ca, TLS_CLIENT_CA)
            material = self._read()
            after = self._stat()
        except (ConfigError, OSError) as error:
            self._rejected = before
            self._warn(str(error))
            return None
        if after != before:
            return None  # still being written; look again at the next connection
        self._signature, self._material = after, material
        self.reloads += 1
        log.info(
            "TLS certificate files changed; new connections use them",
            extra={"cert_file": str(self._cert), "reloads": self.reloads},
        )
        return material.configuration()

    def _warn(self, problem: str) -> None:
        if self._warnings.allow():
            log.warning(
                "TLS certificate files changed but cannot be used; keeping the previous ones",
                extra={"problem": problem, "also_failed": self._warnings.take_suppressed()},
            )


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """Credentials for add_secure_port; TLS must be enabled in ``tls``."""
    return CertificateFiles(tls).credentials()
