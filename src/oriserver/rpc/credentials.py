"""Server TLS credentials from the settings' PEM files (mTLS when a client CA is set)."""

from __future__ import annotations

import grpc

from oriserver.config.transport import TlsSettings


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """Credentials for add_secure_port; TLS must be enabled in ``tls``."""
    if tls.cert_file is None or tls.key_file is None:
        raise ValueError("TLS is not configured")
    pair = (tls.key_file.read_bytes(), tls.cert_file.read_bytes())
    root = tls.client_ca_file.read_bytes() if tls.client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=root, require_client_auth=root is not None
    )
