"""Transport settings: TLS material and the server's connection and message limits."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from oriserver.config.env import ConfigError, EnvReader, variable

TLS_CERT = variable(
    "ORI_TLS_CERT_FILE",
    "",
    "PEM certificate chain; with ORI_TLS_KEY_FILE turns on TLS for the gRPC port.",
)
TLS_KEY = variable("ORI_TLS_KEY_FILE", "", "PEM private key matching ORI_TLS_CERT_FILE.")
TLS_CLIENT_CA = variable(
    "ORI_TLS_CLIENT_CA_FILE",
    "",
    "PEM CA bundle; when set, clients must present a certificate it signed (mTLS).",
)
MAX_RECV = variable(
    "ORI_MAX_RECEIVE_MESSAGE_BYTES",
    "65536",
    "Largest request message accepted; larger ones get RESOURCE_EXHAUSTED.",
)
MAX_SEND = variable(
    "ORI_MAX_SEND_MESSAGE_BYTES",
    "4194304",
    "Largest response message sent (event pages are the large ones).",
)
MAX_STREAMS = variable(
    "ORI_MAX_CONCURRENT_STREAMS", "100", "Concurrent calls per HTTP/2 connection."
)
MIN_PING = variable(
    "ORI_KEEPALIVE_MIN_PING_INTERVAL_SECONDS",
    "30",
    "Clients pinging more often than this are disconnected (keepalive enforcement; pings without calls are refused).",
)
MAX_IDLE = variable(
    "ORI_MAX_CONNECTION_IDLE_SECONDS",
    "300",
    "Close connections that have had no calls for this long.",
)
MAX_AGE = variable(
    "ORI_MAX_CONNECTION_AGE_SECONDS",
    "600",
    "Ask clients to reconnect after this long, so long-lived connections rebalance across pods.",
)
MAX_AGE_GRACE = variable(
    "ORI_MAX_CONNECTION_AGE_GRACE_SECONDS",
    "30",
    "Time calls on an aged-out connection get to finish.",
)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Server TLS; all None means plaintext."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Explicit limits instead of grpc's defaults, so they are visible and documented."""

    max_receive_message_bytes: int = 65536
    max_send_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_streams: int = 100
    keepalive_min_ping_interval_s: int = 30
    max_connection_idle_s: int = 300
    max_connection_age_s: int = 600
    max_connection_age_grace_s: int = 30

    def grpc_options(self) -> list[tuple[str, int]]:
        """The channel arguments that enforce these limits on a grpc server."""
        return [
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.max_send_message_length", self.max_send_message_bytes),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                self.keepalive_min_ping_interval_s * 1000,
            ),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.max_connection_idle_ms", self.max_connection_idle_s * 1000),
            ("grpc.max_connection_age_ms", self.max_connection_age_s * 1000),
            ("grpc.max_connection_age_grace_ms", self.max_connection_age_grace_s * 1000),
        ]


@dataclass(frozen=True, slots=True)
class TransportSettings:
    tls: TlsSettings = field(default_factory=TlsSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)


def _check_key_matches(cert: Path, key: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        reason = error.reason or str(error)
        if "KEY_VALUES_MISMATCH" in str(error):
            raise ConfigError(
                TLS_KEY, f"the key does not match the certificate in {cert}"
            ) from None
        raise ConfigError(TLS_CERT, f"cannot load the certificate and key: {reason}") from None


def load_tls(env: EnvReader) -> TlsSettings:
    cert = env.optional_file(TLS_CERT)
    key = env.optional_file(TLS_KEY)
    client_ca = env.optional_file(TLS_CLIENT_CA)
    if (cert is None) != (key is None):
        missing = TLS_KEY if key is None else TLS_CERT
        raise ConfigError(
            missing, "TLS is half configured: set both ORI_TLS_CERT_FILE and ORI_TLS_KEY_FILE"
        )
    if client_ca is not None and cert is None:
        raise ConfigError(
            TLS_CLIENT_CA, "mTLS needs ORI_TLS_CERT_FILE and ORI_TLS_KEY_FILE as well"
        )
    if cert is not None and key is not None:
        _check_key_matches(cert, key)
    if client_ca is not None:
        try:
            ssl.create_default_context(cafile=str(client_ca))
        except ssl.SSLError:
            raise ConfigError(TLS_CLIENT_CA, f"{client_ca} holds no PEM CA certificate") from None
    return TlsSettings(cert, key, client_ca)


def load_limits(env: EnvReader) -> LimitSettings:
    return LimitSettings(
        max_receive_message_bytes=env.integer(MAX_RECV, 1024, 64 * 1024 * 1024),
        max_send_message_bytes=env.integer(MAX_SEND, 1024, 64 * 1024 * 1024),
        max_concurrent_streams=env.integer(MAX_STREAMS, 1, 10_000),
        keepalive_min_ping_interval_s=env.integer(MIN_PING, 1, 86_400),
        max_connection_idle_s=env.integer(MAX_IDLE, 1, 86_400 * 7),
        max_connection_age_s=env.integer(MAX_AGE, 1, 86_400 * 7),
        max_connection_age_grace_s=env.integer(MAX_AGE_GRACE, 0, 86_400),
    )


def load_transport(env: EnvReader) -> TransportSettings:
    return TransportSettings(tls=load_tls(env), limits=load_limits(env))
