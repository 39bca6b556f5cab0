"""Who may call the events API (ori.events.v1): networks, bearer tokens, client certificates.

The calculation API is public; the log of who called it holds client addresses
and is not. With nothing configured only loopback callers may read it (kubectl
exec, port-forward, a sidecar). A tokens file, or client certificate names with
mTLS, make a credential necessary on every call instead (docs/security.md).

The tokens file is read here once at start-up, so that an empty, unreadable or
world-readable file stops the server with one line; rpc/tokens.py re-reads it
when it changes.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from oriserver.config.env import ConfigError, EnvReader, text, variable
from oriserver.domain.watchlist import WatchList

LOOPBACK = "127.0.0.0/8,::1/128"
EVERYWHERE = "0.0.0.0/0,::/0"
MIN_TOKEN_LENGTH = 16
# RFC 6750's b64token: what may follow "Bearer " in the authorization header.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _networks(value: str) -> WatchList:
    networks = WatchList.parse(value)
    if not networks:
        raise ValueError("must name at least one network")
    return networks


def _names(value: str) -> frozenset[str]:
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def _path(value: str) -> Path | None:
    return Path(value) if value else None


ALLOW_CIDRS = variable(
    "ORI_EVENTS_API_ALLOW_CIDRS",
    "",
    "Comma-separated CIDRs whose callers may use the events API (ori.events.v1); "
    "others get PERMISSION_DENIED. MathHelper, health and reflection stay open to all.",
    parse=text,
    shown=f"`{LOOPBACK}`; every address once tokens or client names are set",
)
TOKENS_FILE = variable(
    "ORI_EVENTS_API_TOKENS_FILE",
    "",
    "File of accepted bearer tokens, one per line (`#` comments); when set, every events-API "
    "call needs `authorization: Bearer <token>`. Re-read when it changes; must not be world-readable.",
    parse=_path,
)
CLIENT_NAMES = variable(
    "ORI_EVENTS_API_CLIENT_NAMES",
    "",
    "Comma-separated DNS or URI SANs of client certificates (mTLS) that may use the events API, "
    "instead of or besides a token.",
    parse=_names,
)


@dataclass(frozen=True, slots=True)
class AccessSettings:
    """The events API's access rules; the tokens themselves are read by rpc/tokens.py."""

    networks: WatchList = field(default_factory=lambda: WatchList.parse(LOOPBACK))
    tokens_file: Path | None = None
    client_names: frozenset[str] = frozenset()

    @property
    def credentials_required(self) -> bool:
        return self.tokens_file is not None or bool(self.client_names)


def read_tokens(path: Path) -> tuple[str, ...]:
    """The tokens in ``path``; ValueError with the problem (never a token) if it is unusable."""
    try:
        mode = path.stat().st_mode  # follows a Secret volume's symlinks
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read {path}: {reason}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file")
    if mode & stat.S_IROTH:
        raise ValueError(f"{path} is readable by every user; chmod o-r it (e.g. 0400 or 0440)")
    tokens = []
    for number, raw in enumerate(content.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not _TOKEN.fullmatch(line) or len(line) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"{path} line {number}: a token is at least {MIN_TOKEN_LENGTH} characters "
                "of A-Z a-z 0-9 - . _ ~ + / (then = padding), one per line"
            )
        tokens.append(line)
    if not tokens:
        raise ValueError(f"{path} holds no token")
    return tuple(tokens)


def load_access(env: EnvReader, *, mutual_tls: bool) -> AccessSettings:
    tokens_file = env.get(TOKENS_FILE)
    if tokens_file is not None:
        try:
            read_tokens(tokens_file)
        except ValueError as error:
            raise ConfigError(TOKENS_FILE, str(error)) from None
    client_names = env.get(CLIENT_NAMES)
    if client_names and not mutual_tls:
        raise ConfigError(
            CLIENT_NAMES,
            "client certificate names need mTLS: set ORI_TLS_CLIENT_CA_FILE "
            "(with ORI_TLS_CERT_FILE and ORI_TLS_KEY_FILE)",
        )
    required = tokens_file is not None or bool(client_names)
    cidrs = env.raw(ALLOW_CIDRS) or (EVERYWHERE if required else LOOPBACK)
    try:
        networks = _networks(cidrs)
    except ValueError as error:
        raise ConfigError(ALLOW_CIDRS, str(error)) from None
    return AccessSettings(networks, tokens_file, client_names)
