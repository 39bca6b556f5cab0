"""How the server serves: the engine, its threads, and where the event host runs.

The native engine (pygrpc-native) cannot do TLS, close connections by age or
idleness, time out handshakes, or police client pings. Asking for any of those
with it is a configuration error at start-up, naming the variable, rather than a
promise silently not kept; their defaults simply do not apply to it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from oriserver.config.access import CLIENT_NAMES
from oriserver.config.env import ConfigError, EnvReader, choice, integer, variable
from oriserver.config.transport import (
    HANDSHAKE_TIMEOUT,
    MAX_AGE,
    MAX_AGE_GRACE,
    MAX_IDLE,
    MIN_PING,
    TLS_CERT,
    TLS_CLIENT_CA,
    TLS_KEY,
)


class Engine(enum.StrEnum):
    GRPCIO = "grpcio"
    NATIVE = "native"


class HostPlacement(enum.StrEnum):
    PROCESS = "process"
    INLINE = "inline"


ENGINE = variable(
    "ORI_SERVER_ENGINE",
    "grpcio",
    "`grpcio` (grpc-core's server) or `native` (pygrpc-native: about 3x less CPU per call; "
    "no TLS, no connection age or idle limits; see docs/serving.md).",
    parse=choice(Engine),
)
# Sync calls spend their time waiting for a commit, and a commit takes what has gathered
# meanwhile: with 8 threads at most 4 calls shared one (measured at 16 calls in flight),
# with 64 twice that, for half the CPU per call. Waiting threads cost no CPU.
SYNC_DURABILITY_THREADS = 64
THREADS = variable(
    "ORI_SERVER_THREADS",
    "8",
    "Threads that run calls (streams have their own); more only helps sync durability, "
    "whose calls wait for commits.",
    parse=integer(1, 256),
    shown=f"8; {SYNC_DURABILITY_THREADS} with `ORI_EVENTS_DURABILITY=sync`",
)
EVENT_HOST = variable(
    "ORI_EVENT_HOST",
    "process",
    "`process`: database writes, the projection and the reactor run in a child process "
    "of each server process. `inline`: in the server process (one process less, more CPU on the serving path).",
    parse=choice(HostPlacement),
)

# Settings the native engine cannot honour, and why, for the error message.
NATIVE_CANNOT: dict[str, str] = {
    TLS_CERT: "TLS",
    TLS_KEY: "TLS",
    TLS_CLIENT_CA: "TLS",
    MAX_AGE: "closing connections by age",
    MAX_AGE_GRACE: "closing connections by age",
    MAX_IDLE: "closing idle connections",
    HANDSHAKE_TIMEOUT: "handshake timeouts",
    MIN_PING: "policing client pings",
    CLIENT_NAMES: "client certificates (mTLS)",
}


@dataclass(frozen=True, slots=True)
class ServingSettings:
    engine: Engine = ENGINE.value
    threads: int = THREADS.value
    event_host: HostPlacement = EVENT_HOST.value

    @property
    def native(self) -> bool:
        return self.engine is Engine.NATIVE


def load_serving(env: EnvReader, *, sync_durability: bool) -> ServingSettings:
    engine = env.get(ENGINE)
    if engine is Engine.NATIVE:
        for name, feature in NATIVE_CANNOT.items():
            if env.is_set(name):
                raise ConfigError(
                    name,
                    f"the native engine has no {feature}; unset it, or use ORI_SERVER_ENGINE=grpcio "
                    "(docs/serving.md says how to get it back in front of the native engine)",
                )
    return ServingSettings(
        engine=engine,
        threads=env.get(THREADS)
        if env.is_set(THREADS) or not sync_durability
        else SYNC_DURABILITY_THREADS,
        event_host=env.get(EVENT_HOST),
    )
