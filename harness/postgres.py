"""A real PostgreSQL for tests, benchmarks and the reliability scenarios.

The given server (``ORI_BENCH_DATABASE_URL`` for the bench and the reliability script, else
``ORI_TEST_DATABASE_URL``) or a throwaway pgserver one; a fresh database per test or run; and the
URLs that reach it through a fault proxy.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

TABLES = ("events", "running_totals", "checkpoints", "leases", "log_start")
TEST_VARIABLES = ("ORI_TEST_DATABASE_URL",)
BENCH_VARIABLES = ("ORI_BENCH_DATABASE_URL", "ORI_TEST_DATABASE_URL")


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


class Postgres:
    """Hands out a fresh, uniquely named database per run, and drops it afterwards."""

    def __init__(
        self, admin_url: str, source: str, pid: int | None, close: Callable[[], None]
    ) -> None:
        self.admin_url = admin_url
        self.source = source
        self.pid = pid  # the postmaster, when it runs on this machine and we know it
        self._close = close
        self._names = (f"ori_{os.getpid()}_{n}_{uuid.uuid4().hex[:6]}" for n in itertools.count(1))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        self.version = str(row[0]) if row else "?"

    @classmethod
    def start(
        cls, environ: Mapping[str, str], variables: tuple[str, ...] = BENCH_VARIABLES
    ) -> Postgres:
        """The first of ``variables`` that is set, else a throwaway pgserver."""
        for variable in variables:
            url = environ.get(variable, "").strip()
            if url:
                return cls(url, f"from {variable}", _local_postmaster(url), lambda: None)
        data_dir = Path(tempfile.mkdtemp(prefix="oribench-pg-"))
        try:
            with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                import pgserver

                server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
        except BaseException:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise

        def close() -> None:
            try:
                server.cleanup()
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)

        try:
            return cls(server.get_uri(), "throwaway (pgserver)", server.get_pid(), close)
        except BaseException:
            close()
            raise

    def create_database(self) -> str:
        """CREATE DATABASE with a name no other run uses; returns its URL."""
        name = next(self._names)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return with_database(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def close(self) -> None:
        self._close()

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database for the block, dropped afterwards."""
        url = self.create_database()
        try:
            yield url
        finally:
            self.drop_database(url)


@contextmanager
def postgres_server(environ: Mapping[str, str] | None = None) -> Iterator[str]:
    """The URL of a PostgreSQL server tests may create databases on: ORI_TEST_DATABASE_URL, else
    a throwaway pgserver for the block."""
    server = Postgres.start(os.environ if environ is None else environ, TEST_VARIABLES)
    try:
        yield server.admin_url
    finally:
        server.close()


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """Create an empty database with a unique name; drop it afterwards."""
    name = f"ori_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")


def proxied(url: str, port: int) -> str:
    """The same database reached through a local TCP proxy on ``port``."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return f"postgresql://{user}@127.0.0.1:{port}{parts.path}"


def proxy_target(url: str) -> tuple[str, int] | str:
    """Where a FaultProxy must forward to reach the server in ``url`` (TCP or Unix socket)."""
    parts = urlsplit(url)
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    if "host" in query and query["host"].startswith("/"):
        return f"{query['host']}/.s.PGSQL.{query.get('port', '5432')}"
    if parts.hostname and parts.hostname.startswith("/"):
        return f"{parts.hostname}/.s.PGSQL.{parts.port or 5432}"
    return (parts.hostname or "127.0.0.1", parts.port or 5432)


def _local_postmaster(url: str) -> int | None:
    """The pid of the PostgreSQL that listens on this loopback URL's port, if this machine
    runs it and lets us see it (so that the benchmark can count its CPU), else None."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(url)
        host, port = str(info.get("host") or "localhost"), int(info.get("port") or 5432)
    except (ImportError, ValueError):
        return None
    if host not in {"127.0.0.1", "localhost", "::1"}:
        return None
    import psutil

    try:
        for connection in psutil.net_connections("tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                pid = connection.pid
                if pid is not None and psutil.Process(pid).name().startswith("postgres"):
                    return int(pid)
    except (psutil.Error, OSError):
        return None
    return None
