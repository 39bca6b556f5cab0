"""The typed, frozen settings object, built from the environment once at start-up."""

from __future__ import annotations

import enum
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from oriserver.config.access import AccessSettings, load_access
from oriserver.config.api import ApiSettings, load_api
from oriserver.config.database import DatabaseUrl
from oriserver.config.env import (
    ConfigError,
    EnvReader,
    boolean,
    choice,
    integer,
    milliseconds,
    number,
    optional_boolean,
    text,
    variable,
)
from oriserver.config.listen import listen_host
from oriserver.config.serving import ServingSettings, load_serving
from oriserver.config.transport import TransportSettings, load_transport
from oriserver.domain.watchlist import WatchList


class LogFormat(enum.StrEnum):
    JSON = "json"
    TEXT = "text"


class LogLevel(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Durability(enum.StrEnum):
    ASYNC = "async"
    SYNC = "sync"


class TracingExporter(enum.StrEnum):
    """Decided by OpenTelemetry's own variables (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*)."""

    OFF = ""
    OTLP = "otlp"
    CONSOLE = "console"


def _grpc_host(value: str) -> str:
    return listen_host(value, bracket_ipv6=True)


def _metrics_host(value: str) -> str:
    return listen_host(value, bracket_ipv6=False)


def _webhook(value: str) -> str | None:
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


LISTEN_HOST = variable(
    "ORI_LISTEN_HOST",
    "[::]",
    "Address the gRPC server binds; `[::]` is every interface, IPv4 included.",
    parse=_grpc_host,
)
PORT = variable(
    "ORI_PORT",
    "50051",
    "gRPC port for the server, and the port `ori` connects to. `0` picks a free port.",
    parse=integer(0, 65535),
)
REFLECTION = variable(
    "ORI_REFLECTION",
    "true",
    "Serve gRPC server reflection so grpcurl-style tools can list and call methods.",
    parse=boolean,
)
GRACE = variable(
    "ORI_SHUTDOWN_GRACE_SECONDS",
    "10",
    "On SIGTERM/SIGINT, how long in-flight calls may take to finish.",
    parse=number(0, 3600),
)
LOG_FORMAT = variable(
    "ORI_LOG_FORMAT",
    "json",
    "`json` (one object per line) or `text` (human-readable).",
    parse=choice(LogFormat),
)
LOG_LEVEL = variable(
    "ORI_LOG_LEVEL",
    "INFO",
    "DEBUG, INFO, WARNING or ERROR. Per-RPC lines are INFO.",
    parse=choice(LogLevel),
)
METRICS_PORT = variable(
    "ORI_METRICS_PORT",
    "9464",
    "Prometheus metrics over plain HTTP at /metrics on this port; `0` turns them off.",
    parse=integer(0, 65535),
)
METRICS_HOST = variable(
    "ORI_METRICS_LISTEN_HOST",
    "0.0.0.0",
    "Address the metrics server binds; `127.0.0.1` keeps it to the pod or host.",
    parse=_metrics_host,
)
WORKERS = variable(
    "ORI_WORKERS",
    "1",
    "Server processes sharing the gRPC port (SO_REUSEPORT); set it to the cores available.",
    parse=integer(1, 64),
)
LOG_RPCS = variable(
    "ORI_LOG_RPCS",
    "true",
    "Write one log line per RPC (method, peer, status code, duration).",
    parse=boolean,
)
INSTANCE_ID = variable(
    "ORI_INSTANCE_ID",
    "",
    "Recorded on every event; in Kubernetes the host name is the pod name.",
    shown="the host name",
    parse=text,
)
DATABASE_URL = variable(
    "ORI_DATABASE_URL",
    "sqlite:///oriserver.db",
    "Event store: `sqlite:///path` or `postgresql://user@host:5432/db` (password via `PGPASSWORD`).",
    parse=DatabaseUrl.parse,
    echo=False,
)
AUTO_MIGRATE = variable(
    "ORI_DB_AUTO_MIGRATE",
    "",
    shown="true for SQLite, false for PostgreSQL",
    help_text="Apply schema migrations at start-up. Keep it off when replicas share a PostgreSQL; run `oriserver db upgrade` once instead.",
    parse=optional_boolean,
)
EVENTS_ENABLED = variable(
    "ORI_EVENTS_ENABLED", "true", "Record every calculation in the event store.", parse=boolean
)
DURABILITY = variable(
    "ORI_EVENTS_DURABILITY",
    "async",
    "`async`: answer at once, write in the background. `sync`: answer after the events are committed.",
    parse=choice(Durability),
)
BATCH_SIZE = variable(
    "ORI_EVENTS_BATCH_SIZE",
    "1000",
    "Events per write transaction at most; reaching it starts a flush.",
    parse=integer(1, 100_000),
)
FLUSH_MS = variable(
    "ORI_EVENTS_FLUSH_INTERVAL_MS",
    "50",
    "Longest time an event waits in memory before a flush starts (async mode).",
    parse=milliseconds(1, 60_000),
)
BUFFER_SIZE = variable(
    "ORI_EVENTS_BUFFER_SIZE",
    "100000",
    "Events held in memory at most (async mode). Beyond it new calculations are served but not recorded, and counted as dropped.",
    parse=integer(2),
)
DB_TIMEOUT = variable(
    "ORI_DB_TIMEOUT_SECONDS",
    "5",
    "PostgreSQL connect, pool and TCP timeouts: how soon an unreachable database is noticed.",
    parse=number(0.5, 300),
)
SHUTDOWN_FLUSH = variable(
    "ORI_EVENTS_SHUTDOWN_FLUSH_SECONDS",
    "30",
    "On shutdown, how long to keep trying to write buffered events before giving up and reporting the loss.",
    parse=number(0, 3600),
)
PROJECTION_INTERVAL = variable(
    "ORI_PROJECTION_INTERVAL_MS",
    "200",
    "How often projections and reactors look for new events in the log.",
    parse=milliseconds(10, 60_000),
)
WATCH_IPS = variable(
    "ORI_WATCH_IPS",
    "",
    "Comma-separated IPs or CIDRs; each request from them logs a WARNING notification.",
    parse=WatchList.parse,
)
WEBHOOK_URL = variable(
    "ORI_NOTIFY_WEBHOOK_URL",
    "",
    "When set, watched requests are also POSTed there as JSON, with retries.",
    parse=_webhook,
)
WEBHOOK_TIMEOUT = variable(
    "ORI_NOTIFY_TIMEOUT_SECONDS", "5", "Timeout of one webhook POST.", parse=number(0.1, 300)
)
WEBHOOK_ATTEMPTS = variable(
    "ORI_NOTIFY_MAX_ATTEMPTS",
    "8",
    "POST attempts per notification before the reactor pauses and retries the same event later.",
    parse=integer(1, 100),
)


@dataclass(frozen=True, slots=True)
class EventSettings:
    """The event store and its batching writer."""

    enabled: bool = EVENTS_ENABLED.value
    database: DatabaseUrl = field(default_factory=lambda: DATABASE_URL.value)
    auto_migrate: bool = True  # ORI_DB_AUTO_MIGRATE unset: true for SQLite (the default URL)
    durability: Durability = DURABILITY.value
    batch_size: int = BATCH_SIZE.value
    flush_interval_s: float = FLUSH_MS.value
    buffer_size: int = BUFFER_SIZE.value
    shutdown_flush_s: float = SHUTDOWN_FLUSH.value
    projection_interval_s: float = PROJECTION_INTERVAL.value
    db_timeout_s: float = DB_TIMEOUT.value

    @property
    def sync(self) -> bool:
        return self.durability is Durability.SYNC


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """The watch-list reactor."""

    watch_list: WatchList = field(default_factory=lambda: WATCH_IPS.value)
    webhook_url: str | None = WEBHOOK_URL.value
    webhook_timeout_s: float = WEBHOOK_TIMEOUT.value
    webhook_max_attempts: int = WEBHOOK_ATTEMPTS.value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to know, fixed for the life of the process."""

    listen_host: str = LISTEN_HOST.value
    port: int = PORT.value
    reflection: bool = REFLECTION.value
    shutdown_grace_s: float = GRACE.value
    log_format: LogFormat = LOG_FORMAT.value
    log_level: LogLevel = LOG_LEVEL.value
    log_rpcs: bool = LOG_RPCS.value
    instance_id: str = field(default_factory=socket.gethostname)  # ORI_INSTANCE_ID unset
    events: EventSettings = field(default_factory=EventSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    transport: TransportSettings = field(default_factory=TransportSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    tracing_exporter: TracingExporter = TracingExporter.OFF
    metrics_port: int = METRICS_PORT.value
    metrics_listen_host: str = METRICS_HOST.value
    workers: int = WORKERS.value

    @property
    def bind_address(self) -> str:
        return f"{self.listen_host}:{self.port}"


def _event_settings(env: EnvReader) -> EventSettings:
    database = env.get(DATABASE_URL)
    auto_migrate = env.get(AUTO_MIGRATE)
    batch_size = env.get(BATCH_SIZE)
    buffer_size = env.get(BUFFER_SIZE)
    if buffer_size < batch_size:
        raise ConfigError(BUFFER_SIZE, f"must be at least ORI_EVENTS_BATCH_SIZE ({batch_size})")
    return EventSettings(
        enabled=env.get(EVENTS_ENABLED),
        database=database,
        auto_migrate=database.dialect == "sqlite" if auto_migrate is None else auto_migrate,
        durability=env.get(DURABILITY),
        batch_size=batch_size,
        flush_interval_s=env.get(FLUSH_MS),
        buffer_size=buffer_size,
        shutdown_flush_s=env.get(SHUTDOWN_FLUSH),
        db_timeout_s=env.get(DB_TIMEOUT),
        projection_interval_s=env.get(PROJECTION_INTERVAL),
    )


def _notify_settings(env: EnvReader) -> NotifySettings:
    return NotifySettings(
        watch_list=env.get(WATCH_IPS),
        webhook_url=env.get(WEBHOOK_URL),
        webhook_timeout_s=env.get(WEBHOOK_TIMEOUT),
        webhook_max_attempts=env.get(WEBHOOK_ATTEMPTS),
    )


def _tracing_exporter(environ: Mapping[str, str]) -> TracingExporter:
    """Tracing is on when an OTLP endpoint or a traces exporter is configured."""
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingExporter.OFF
    if exporter:
        if exporter not in (TracingExporter.OTLP, TracingExporter.CONSOLE):
            raise ConfigError(
                "OTEL_TRACES_EXPORTER", f"must be otlp, console or none (got {exporter!r})"
            )
        return TracingExporter(exporter)
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return TracingExporter.OTLP if endpoint and endpoint.strip() else TracingExporter.OFF


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Parse every ORI_* variable, serving first; raise ConfigError naming the first bad one."""
    env = EnvReader(environ)
    serving = load_serving(env, sync_durability=env.get(DURABILITY) is Durability.SYNC)
    transport = load_transport(env)
    return Settings(
        listen_host=env.get(LISTEN_HOST),
        port=env.get(PORT),
        reflection=env.get(REFLECTION),
        shutdown_grace_s=env.get(GRACE),
        log_format=env.get(LOG_FORMAT),
        log_level=env.get(LOG_LEVEL),
        log_rpcs=env.get(LOG_RPCS),
        instance_id=env.get(INSTANCE_ID) or socket.gethostname(),
        events=_event_settings(env),
        notify=_notify_settings(env),
        transport=transport,
        tracing_exporter=_tracing_exporter(environ),
        api=load_api(env),
        access=load_access(env, mutual_tls=transport.tls.mutual),
        serving=serving,
        metrics_port=env.get(METRICS_PORT),
        metrics_listen_host=env.get(METRICS_HOST),
        workers=env.get(WORKERS),
    )
