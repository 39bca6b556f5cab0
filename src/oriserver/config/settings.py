"""The typed, frozen settings object, built from the environment once at start-up."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from oriserver.config.api import ApiSettings, load_api
from oriserver.config.database import DatabaseUrl
from oriserver.config.env import ConfigError, EnvReader, variable
from oriserver.config.listen import listen_host
from oriserver.config.serving import ServingSettings, load_serving
from oriserver.config.transport import TransportSettings, load_transport
from oriserver.domain.watchlist import WatchList

LISTEN_HOST = variable(
    "ORI_LISTEN_HOST",
    "[::]",
    "Address the gRPC server binds; `[::]` is every interface, IPv4 included.",
)
PORT = variable(
    "ORI_PORT",
    "50051",
    "gRPC port for the server, and the port `ori` connects to. `0` picks a free port.",
)
REFLECTION = variable(
    "ORI_REFLECTION",
    "true",
    "Serve gRPC server reflection so grpcurl-style tools can list and call methods.",
)
GRACE = variable(
    "ORI_SHUTDOWN_GRACE_SECONDS",
    "10",
    "On SIGTERM/SIGINT, how long in-flight calls may take to finish.",
)
LOG_FORMAT = variable(
    "ORI_LOG_FORMAT", "json", "`json` (one object per line) or `text` (human-readable)."
)
LOG_LEVEL = variable(
    "ORI_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR. Per-RPC lines are INFO."
)
METRICS_PORT = variable(
    "ORI_METRICS_PORT",
    "9464",
    "Prometheus metrics over plain HTTP at /metrics on this port; `0` turns them off.",
)
METRICS_HOST = variable(
    "ORI_METRICS_LISTEN_HOST",
    "0.0.0.0",
    "Address the metrics server binds; `127.0.0.1` keeps it to the pod or host.",
)
WORKERS = variable(
    "ORI_WORKERS",
    "1",
    "Server processes sharing the gRPC port (SO_REUSEPORT); set it to the cores available.",
)
LOG_RPCS = variable(
    "ORI_LOG_RPCS", "true", "Write one log line per RPC (method, peer, status code, duration)."
)
INSTANCE_ID = variable(
    "ORI_INSTANCE_ID",
    "",
    "Recorded on every event; in Kubernetes the host name is the pod name.",
    shown="the host name",
)
DATABASE_URL = variable(
    "ORI_DATABASE_URL",
    "sqlite:///oriserver.db",
    "Event store: `sqlite:///path` or `postgresql://user@host:5432/db` (password via `PGPASSWORD`).",
)
AUTO_MIGRATE = variable(
    "ORI_DB_AUTO_MIGRATE",
    "",
    shown="true for SQLite, false for PostgreSQL",
    help_text="Apply schema migrations at start-up. Keep it off when replicas share a PostgreSQL; run `oriserver db upgrade` once instead.",
)
EVENTS_ENABLED = variable(
    "ORI_EVENTS_ENABLED", "true", "Record every calculation in the event store."
)
DURABILITY = variable(
    "ORI_EVENTS_DURABILITY",
    "async",
    "`async`: answer at once, write in the background. `sync`: answer after the events are committed.",
)
BATCH_SIZE = variable(
    "ORI_EVENTS_BATCH_SIZE",
    "1000",
    "Events per write transaction at most; reaching it starts a flush.",
)
FLUSH_MS = variable(
    "ORI_EVENTS_FLUSH_INTERVAL_MS",
    "50",
    "Longest time an event waits in memory before a flush starts (async mode).",
)
BUFFER_SIZE = variable(
    "ORI_EVENTS_BUFFER_SIZE",
    "100000",
    "Events held in memory at most (async mode). Beyond it new calculations are served but not recorded, and counted as dropped.",
)
DB_TIMEOUT = variable(
    "ORI_DB_TIMEOUT_SECONDS",
    "5",
    "PostgreSQL connect, pool and TCP timeouts: how soon an unreachable database is noticed.",
)
SHUTDOWN_FLUSH = variable(
    "ORI_EVENTS_SHUTDOWN_FLUSH_SECONDS",
    "30",
    "On shutdown, how long to keep trying to write buffered events before giving up and reporting the loss.",
)
PROJECTION_INTERVAL = variable(
    "ORI_PROJECTION_INTERVAL_MS",
    "200",
    "How often projections and reactors look for new events in the log.",
)
WATCH_IPS = variable(
    "ORI_WATCH_IPS",
    "",
    "Comma-separated IPs or CIDRs; each request from them logs a WARNING notification.",
)
WEBHOOK_URL = variable(
    "ORI_NOTIFY_WEBHOOK_URL",
    "",
    "When set, watched requests are also POSTed there as JSON, with retries.",
)
WEBHOOK_TIMEOUT = variable("ORI_NOTIFY_TIMEOUT_SECONDS", "5", "Timeout of one webhook POST.")
WEBHOOK_ATTEMPTS = variable(
    "ORI_NOTIFY_MAX_ATTEMPTS",
    "8",
    "POST attempts per notification before the reactor pauses and retries the same event later.",
)


@dataclass(frozen=True, slots=True)
class EventSettings:
    """The event store and its batching writer."""

    enabled: bool = True
    database: DatabaseUrl = field(
        default_factory=lambda: DatabaseUrl.parse("sqlite:///oriserver.db")
    )
    auto_migrate: bool = True
    durability: str = "async"
    batch_size: int = 1000
    flush_interval_s: float = 0.05
    buffer_size: int = 100_000
    shutdown_flush_s: float = 30.0
    projection_interval_s: float = 0.2
    db_timeout_s: float = 5.0

    @property
    def sync(self) -> bool:
        return self.durability == "sync"


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """The watch-list reactor."""

    watch_list: WatchList = field(default_factory=WatchList)
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 8


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to know, fixed for the life of the process."""

    listen_host: str = "[::]"
    port: int = 50051
    reflection: bool = True
    shutdown_grace_s: float = 10.0
    log_format: str = "json"
    log_level: str = "INFO"
    log_rpcs: bool = True
    instance_id: str = field(default_factory=socket.gethostname)
    events: EventSettings = field(default_factory=EventSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    transport: TransportSettings = field(default_factory=TransportSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    # OpenTelemetry's own variables decide whether to trace: "" (off), "otlp" or "console".
    tracing_exporter: str = ""
    metrics_port: int = 9464
    metrics_listen_host: str = "0.0.0.0"
    workers: int = 1

    @property
    def bind_address(self) -> str:
        return f"{self.listen_host}:{self.port}"


def _webhook(text: str) -> str | None:
    if not text:
        return None
    if not text.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return text


def _database(env: EnvReader) -> DatabaseUrl:
    # Not env.parsed: its message quotes the value, and this one may hold a password.
    try:
        return DatabaseUrl.parse(env.raw(DATABASE_URL))
    except ValueError as error:
        raise ConfigError(DATABASE_URL, str(error)) from None


def _event_settings(env: EnvReader) -> EventSettings:
    database = _database(env)
    auto_migrate = (
        env.boolean(AUTO_MIGRATE) if env.is_set(AUTO_MIGRATE) else database.dialect == "sqlite"
    )
    batch_size = env.integer(BATCH_SIZE, 1, 100_000)
    buffer_size = env.integer(BUFFER_SIZE, 2, None)
    if buffer_size < batch_size:
        raise ConfigError(BUFFER_SIZE, f"must be at least ORI_EVENTS_BATCH_SIZE ({batch_size})")
    return EventSettings(
        enabled=env.boolean(EVENTS_ENABLED),
        database=database,
        auto_migrate=auto_migrate,
        durability=env.choice(DURABILITY, ("async", "sync")),
        batch_size=batch_size,
        flush_interval_s=env.integer(FLUSH_MS, 1, 60_000) / 1000,
        buffer_size=buffer_size,
        shutdown_flush_s=env.number(SHUTDOWN_FLUSH, 0, 3600),
        db_timeout_s=env.number(DB_TIMEOUT, 0.5, 300),
        projection_interval_s=env.integer(PROJECTION_INTERVAL, 10, 60_000) / 1000,
    )


def _notify_settings(env: EnvReader) -> NotifySettings:
    return NotifySettings(
        watch_list=env.parsed(WATCH_IPS, WatchList.parse),
        webhook_url=env.parsed(WEBHOOK_URL, _webhook),
        webhook_timeout_s=env.number(WEBHOOK_TIMEOUT, 0.1, 300),
        webhook_max_attempts=env.integer(WEBHOOK_ATTEMPTS, 1, 100),
    )


def _tracing_exporter(environ: Mapping[str, str]) -> str:
    """Tracing is on when an OTLP endpoint or a traces exporter is configured."""
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    if exporter:
        if exporter not in ("otlp", "console"):
            raise ConfigError(
                "OTEL_TRACES_EXPORTER", f"must be otlp, console or none (got {exporter!r})"
            )
        return exporter
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return "otlp" if endpoint and endpoint.strip() else ""


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Parse every ORI_* variable; raise ConfigError naming the first bad one."""
    env = EnvReader(environ)
    instance = env.raw(INSTANCE_ID) or socket.gethostname()
    return Settings(
        listen_host=env.parsed(LISTEN_HOST, lambda text: listen_host(text, bracket_ipv6=True)),
        port=env.integer(PORT, 0, 65535),
        reflection=env.boolean(REFLECTION),
        shutdown_grace_s=env.number(GRACE, 0, 3600),
        log_format=env.choice(LOG_FORMAT, ("json", "text")),
        log_level=env.choice(LOG_LEVEL, ("debug", "info", "warning", "error")).upper(),
        log_rpcs=env.boolean(LOG_RPCS),
        instance_id=instance,
        events=_event_settings(env),
        notify=_notify_settings(env),
        transport=load_transport(env),
        tracing_exporter=_tracing_exporter(environ),
        api=load_api(env),
        serving=load_serving(env),
        metrics_port=env.integer(METRICS_PORT, 0, 65535),
        metrics_listen_host=env.parsed(
            METRICS_HOST, lambda text: listen_host(text, bracket_ipv6=False)
        ),
        workers=env.integer(WORKERS, 1, 64),
    )
