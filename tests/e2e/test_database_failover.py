"""A fleet member rides out its database's failover: real PostgreSQL servers, a real
oriserver process in sync mode, and the fault proxy standing in for the Service that
follows the primary (oriserver-postgres-rw under CloudNativePG).

Two ways the database goes away and comes back (docs/operating.md, the database):
the primary dies and a streaming standby (synchronous replication, as with
components/cnpg-synchronous) is promoted in its place; or the one PostgreSQL is
stopped and started again. Either way the server reconnects by itself, its health
turns and recovers, and every call it answered OK is in the table afterwards, once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.event_table import stored_calls
from harness.faultproxy import FaultProxy, fault_proxy
from harness.load import Load
from harness.servers import ServerProcess, server_env, start_server
from oriserver.config.database import DatabaseUrl
from tests.support.pgcluster import Instance, pg_cluster, server_binaries

BINARIES = server_binaries()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BINARIES is None, reason="no PostgreSQL server binaries on this machine"),
]

TIMEOUT_S = 1.0  # ORI_DB_TIMEOUT_SECONDS: how long a sync call waits for its commit
SERVING = health_pb2.HealthCheckResponse.SERVING


def migrate(url: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oriserver", "db", "upgrade"],
        env=server_env({"ORI_DATABASE_URL": url}), cwd=cwd, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def serve_through(proxy: FaultProxy, tmp_path: Path) -> ServerProcess:
    env = {
        "ORI_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres",
        "ORI_DB_AUTO_MIGRATE": "false",
        "ORI_EVENTS_DURABILITY": "sync",
        "ORI_DB_TIMEOUT_SECONDS": str(TIMEOUT_S),
        "ORI_LOG_RPCS": "false",
    }
    return start_server(tmp_path, env)


def health(target: str) -> int:
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="MathHelper"), timeout=2
            )
    except grpc.RpcError:
        return -1
    return reply.status


def wait_until(
    condition: Callable[[], bool], what: str, server: ServerProcess | None, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        logs = server.logs()[-3000:] if server else ""
        assert time.monotonic() < deadline, f"{what} within {timeout} s\n{logs}"
        time.sleep(0.1)


def streaming_synchronously(primary: Instance) -> bool:
    with psycopg.connect(primary.url) as connection:
        rows = connection.execute("SELECT state, sync_state FROM pg_stat_replication").fetchall()
    return rows == [("streaming", "quorum")]  # ANY 1 (*): a quorum of one


def under_load(server: ServerProcess) -> Load:
    # The event host starts with the first call, which may outlast the timeout on a busy machine.
    load = Load(server.target, clients=4).start()
    load.wait_for_ok_since(0, 100)
    return load


def recovers(load: Load, server: ServerProcess, outage_began: int) -> None:
    """After the outage: calls succeed again and the server reports itself serving."""
    load.wait_for_ok_since(load.count(), 100, timeout=30)
    wait_until(lambda: health(server.target) == SERVING, "health SERVING again", server)
    assert load.codes_since(outage_began)["OK"] >= 100


def nothing_acknowledged_lost(load: Load, server: ServerProcess, database: str) -> None:
    load.stop()
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0, server.logs()[-3000:]
    acknowledged = {call.id for call in load.calls() if call.code == "OK"}
    stored = stored_calls(DatabaseUrl.parse(database))
    assert acknowledged, "no call was answered"
    assert acknowledged - stored.answered == set(), "answered OK, then lost"
    assert stored.duplicated() == set()
    assert stored.unpaired() == set()
    refused = {call.code for call in load.calls() if call.code != "OK"}
    assert refused <= {"UNAVAILABLE"}, refused  # sync mode: refused in time, never wrong


def test_the_primary_fails_over_to_a_standby_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    assert BINARIES is not None
    started = time.monotonic()
    with pg_cluster(BINARIES) as cluster:
        primary = cluster.primary()
        migrate(primary.url, tmp_path)
        standby = cluster.standby_of(primary)
        primary.replicate_synchronously()
        wait_until(lambda: streaming_synchronously(primary), "a synchronous standby", None)
        with fault_proxy(("127.0.0.1", primary.port)) as proxy:
            server = serve_through(proxy, tmp_path)
            load = under_load(server)
            outage_began = load.count()
            primary.stop("immediate")  # the primary's node is gone
            wait_until(lambda: health(server.target) != SERVING, "health turned", server)
            standby.promote()
            proxy.retarget(("127.0.0.1", standby.port))  # the -rw Service follows it
            recovers(load, server, outage_began)
            nothing_acknowledged_lost(load, server, standby.url)
        assert server.records("event store available again"), "no reconnection logged"
    assert time.monotonic() - started < 60


def test_the_one_postgresql_stops_and_starts_again_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    assert BINARIES is not None
    started = time.monotonic()
    with pg_cluster(BINARIES) as cluster:
        database = cluster.primary()
        migrate(database.url, tmp_path)
        with fault_proxy(("127.0.0.1", database.port)) as proxy:
            server = serve_through(proxy, tmp_path)
            load = under_load(server)
            outage_began = load.count()
            database.stop("fast")  # a restart: clients are disconnected
            wait_until(lambda: health(server.target) != SERVING, "health turned", server)
            database.start()
            recovers(load, server, outage_began)
            nothing_acknowledged_lost(load, server, database.url)
        assert server.records("event store available again"), "no reconnection logged"
    assert time.monotonic() - started < 60
