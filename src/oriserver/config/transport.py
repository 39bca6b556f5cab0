"""Transport settings: TLS material and the server's connection and message limits."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from oriserver.config.env import ConfigError, EnvReader, integer, optional_file, variable

TLS_CERT = variable(
    "ORI_TLS_CERT_FILE",
    "",
    "PEM certificate chain; with ORI_TLS_KEY_FILE turns on TLS for the gRPC port.",
    parse=optional_file,
)
TLS_KEY = variable(
    "ORI_TLS_KEY_FILE",
    "",
    "Unencrypted PEM private key matching ORI_TLS_CERT_FILE.",
    parse=optional_file,
)
TLS_CLIENT_CA = variable(
    "ORI_TLS_CLIENT_CA_FILE",
    "",
    "PEM CA bundle; when set, clients must present a certificate it signed (mTLS).",
    parse=optional_file,
)
MAX_RECV = variable(
    "ORI_MAX_RECEIVE_MESSAGE_BYTES",
    "65536",
    "Largest request message accepted; larger ones get RESOURCE_EXHAUSTED.",
    parse=integer(1024, 64 * 1024 * 1024),
)
MAX_SEND = variable(
    "ORI_MAX_SEND_MESSAGE_BYTES",
    "4194304",
    "Largest response message sent (event pages are the large ones).",
    parse=integer(1024, 64 * 1024 * 1024),
)
MAX_METADATA = variable(
    "ORI_MAX_METADATA_BYTES",
    "16384",
    "Largest total size of a request's headers; larger ones get RESOURCE_EXHAUSTED.",
    parse=integer(1024, 1024 * 1024),
)
MAX_STREAMS = variable(
    "ORI_MAX_CONCURRENT_STREAMS",
    "100",
    "Concurrent calls per HTTP/2 connection.",
    parse=integer(1, 10_000),
)
MIN_PING = variable(
    "ORI_KEEPALIVE_MIN_PING_INTERVAL_SECONDS",
    "30",
    "Clients pinging more often than this while the server sends nothing are disconnected "
    "(GOAWAY too_many_pings); pings on a connection without calls are refused.",
    parse=integer(1, 86_400),
)
HANDSHAKE_TIMEOUT = variable(
    "ORI_HANDSHAKE_TIMEOUT_SECONDS",
    "10",
    "Close connections that have not finished the TLS and HTTP/2 handshake by then.",
    parse=integer(1, 300),
)
MAX_IDLE = variable(
    "ORI_MAX_CONNECTION_IDLE_SECONDS",
    "300",
    "Close connections that have had no calls for this long.",
    parse=integer(1, 86_400 * 7),
)
MAX_AGE = variable(
    "ORI_MAX_CONNECTION_AGE_SECONDS",
    "600",
    "Ask clients to reconnect after this long, so long-lived connections rebalance across pods.",
    parse=integer(1, 86_400 * 7),
)
MAX_AGE_GRACE = variable(
    "ORI_MAX_CONNECTION_AGE_GRACE_SECONDS",
    "30",
    "Time calls on an aged-out connection get to finish.",
    parse=integer(0, 86_400),
)

# grpc's own default; a client pinging faster is sent away after this many early pings.
MAX_PING_STRIKES = 2


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

    max_receive_message_bytes: int = MAX_RECV.value
    max_send_message_bytes: int = MAX_SEND.value
    max_metadata_bytes: int = MAX_METADATA.value
    max_concurrent_streams: int = MAX_STREAMS.value
    keepalive_min_ping_interval_s: int = MIN_PING.value
    handshake_timeout_s: int = HANDSHAKE_TIMEOUT.value
    max_connection_idle_s: int = MAX_IDLE.value
    max_connection_age_s: int = MAX_AGE.value
    max_connection_age_grace_s: int = MAX_AGE_GRACE.value

    def grpc_options(self, native: bool = False) -> list[tuple[str, int]]:
        """The channel arguments that enforce these limits on a grpc server. The native
        engine refuses the connection age and idle options (config/serving.py)."""
        options = [
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.max_send_message_length", self.max_send_message_bytes),
            # Soft and hard limit equal: grpc refuses requests between the two at
            # random, and a limit that holds only sometimes cannot be documented.
            ("grpc.max_metadata_size", self.max_metadata_bytes),
            ("grpc.absolute_max_metadata_size", self.max_metadata_bytes),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            # Counted between pings received since the server last sent headers or
            # data; past MAX_PING_STRIKES early pings the client gets GOAWAY.
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                self.keepalive_min_ping_interval_s * 1000,
            ),
            ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
            ("grpc.keepalive_permit_without_calls", 0),
            # grpc waits 120 s by default for a handshake that may never come.
            ("grpc.server_handshake_timeout_ms", self.handshake_timeout_s * 1000),
        ]
        if not native:
            options += [
                ("grpc.max_connection_idle_ms", self.max_connection_idle_s * 1000),
                ("grpc.max_connection_age_ms", self.max_connection_age_s * 1000),
                ("grpc.max_connection_age_grace_ms", self.max_connection_age_grace_s * 1000),
            ]
        return options


@dataclass(frozen=True, slots=True)
class TransportSettings:
    tls: TlsSettings = field(default_factory=TlsSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)


def _pem_text(path: Path, name: str, what: str) -> str:
    try:
        return path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise ConfigError(
            name, f"{path} is not a PEM file ({what}); DER is not supported"
        ) from None
    except OSError as error:
        raise ConfigError(name, f"cannot read {path}: {error.strerror}") from None


def check_certificates(path: Path, name: str) -> None:
    """``path`` must hold at least one PEM certificate; raises ConfigError naming ``name``."""
    text = _pem_text(path, name, "certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError):
        raise ConfigError(name, f"{path} holds no PEM certificate") from None


class _EncryptedKey(Exception):
    """Raised from the password callback: the key needs a passphrase."""


def _no_passphrase() -> str:
    # Without a callback OpenSSL would ask for the passphrase on the terminal and wait.
    raise _EncryptedKey


def check_key_pair(cert: Path, key: Path, cert_name: str, key_name: str) -> None:
    """The certificate and key must be PEM, the key unencrypted and matching the certificate."""
    check_certificates(cert, cert_name)
    if "PRIVATE KEY-----" not in _pem_text(key, key_name, "private key"):
        raise ConfigError(key_name, f"{key} holds no PEM private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _EncryptedKey:
        raise ConfigError(
            key_name, f"{key} is encrypted; grpc needs the key without a passphrase"
        ) from None
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error):
            raise ConfigError(
                key_name, f"the key does not match the certificate in {cert}"
            ) from None
        raise ConfigError(key_name, f"{key} holds no valid PEM private key") from None


def load_tls(env: EnvReader) -> TlsSettings:
    cert = env.get(TLS_CERT)
    key = env.get(TLS_KEY)
    client_ca = env.get(TLS_CLIENT_CA)
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
        check_key_pair(cert, key, TLS_CERT, TLS_KEY)
    if client_ca is not None:
        check_certificates(client_ca, TLS_CLIENT_CA)
    return TlsSettings(cert, key, client_ca)


def load_limits(env: EnvReader) -> LimitSettings:
    return LimitSettings(
        max_receive_message_bytes=env.get(MAX_RECV),
        max_send_message_bytes=env.get(MAX_SEND),
        max_metadata_bytes=env.get(MAX_METADATA),
        max_concurrent_streams=env.get(MAX_STREAMS),
        keepalive_min_ping_interval_s=env.get(MIN_PING),
        handshake_timeout_s=env.get(HANDSHAKE_TIMEOUT),
        max_connection_idle_s=env.get(MAX_IDLE),
        max_connection_age_s=env.get(MAX_AGE),
        max_connection_age_grace_s=env.get(MAX_AGE_GRACE),
    )


def load_transport(env: EnvReader) -> TransportSettings:
    return TransportSettings(tls=load_tls(env), limits=load_limits(env))
