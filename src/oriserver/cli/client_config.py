"""Where ``ori`` connects by default: the ORI_HOST/ORI_PORT environment, then localhost:50051."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from oriserver.cli.client_tls import TlsDefaults, tls_defaults
from oriserver.cli.client_token import token_file_default
from oriserver.config.env import ConfigError, EnvReader, text, variable
from oriserver.config.settings import PORT

HOST = variable("ORI_HOST", "localhost", "Server host `ori` connects to (`--host`).", parse=text)


@dataclass(frozen=True, slots=True)
class ClientDefaults:
    host: str
    port: int
    tls: TlsDefaults = field(default_factory=TlsDefaults)
    token_file: str = ""


def client_defaults(environ: Mapping[str, str]) -> ClientDefaults:
    """Read the client's defaults; raises ConfigError naming a bad variable."""
    env = EnvReader(environ)
    port = env.get(PORT)
    if port == 0:  # the server may pick a free port; a client must be told which
        raise ConfigError(PORT, "must be between 1 and 65535 (got '0')")
    return ClientDefaults(
        host=env.get(HOST), port=port, tls=tls_defaults(env), token_file=token_file_default(env)
    )
