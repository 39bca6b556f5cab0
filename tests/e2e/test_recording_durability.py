"""What the durability modes promise, checked against the events table after real signals."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness import postgres
from harness.event_table import stored_calls
from harness.faultproxy import fault_proxy
from harness.load import Load
from harness.servers import start_server
from oriserver.config.database import DatabaseUrl

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> DatabaseUrl:
    name = "sqlite_database" if request.param == "sqlite" else "clean_postgres"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def server_for(tmp_path: Path, database: DatabaseUrl, durability: str, **extra: str):  # type: ignore[no-untyped-def]
    env = {
        "ORI_DATABASE_URL": database.url,
        "ORI_DB_AUTO_MIGRATE": "false",
        "ORI_EVENTS_DURABILITY": durability,
        "ORI_LOG_RPCS": "false",
        **extra,
    }
    return start_server(tmp_path, env)


@pytest.mark.parametrize("durability", ["async", "sync"])
def test_sigterm_under_load_loses_nothing(
    tmp_path: Path, database: DatabaseUrl, durability: str
) -> None:
    server = server_for(tmp_path, database, durability)
    load = Load(server.target, clients=6).start()
    load.wait_for(300)
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0, server.logs()
    load.stop()
    stored = stored_calls(database)
    assert stored.answered == load.acknowledged()  # every answered call has its outcome stored...
    assert stored.unpaired() == set()  # ...and its request; no call is half-recorded
    assert stored.duplicated() == set()
    assert stored.event_ids_unique


def test_sigkill_in_sync_mode_keeps_every_acknowledged_call(
    tmp_path: Path, database: DatabaseUrl
) -> None:
    server = server_for(tmp_path, database, "sync")
    load = Load(server.target, clients=6).start()
    load.wait_for(300)
    server.signal(signal.SIGKILL)
    server.wait(30)
    load.stop()
    stored = stored_calls(database)
    acknowledged = load.acknowledged()
    assert len(acknowledged) >= 300
    assert acknowledged <= stored.answered  # stored may also hold calls whose reply was lost
    assert stored.unpaired() == set()
    assert stored.duplicated() == set()


def test_sigkill_in_async_mode_loses_at_most_the_unflushed_tail(
    tmp_path: Path, database: DatabaseUrl
) -> None:
    server = server_for(tmp_path, database, "async", ORI_EVENTS_FLUSH_INTERVAL_MS="20")
    load = Load(server.target, clients=6).start()
    load.wait_for(400)
    # The event host starts with the first call; on a loaded machine that takes a while,
    # and everything before its first commit is "the tail". Kill once it is writing.
    deadline = time.monotonic() + 30
    while not stored_calls(database).answered:
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.1)
    time.sleep(0.5)
    server.signal(signal.SIGKILL)
    server.wait(30)
    load.stop()
    stored = stored_calls(database)
    acknowledged = load.acknowledged()
    assert stored.answered <= acknowledged
    assert len(acknowledged - stored.answered) < len(acknowledged) / 2  # only a recent tail
    assert stored.unpaired() == set()  # a calculation's two events are written together
    assert stored.duplicated() == set()


def _events_health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service="ori.events.v1.EventsService")
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


@pytest.mark.postgres
@pytest.mark.parametrize("durability", ["async", "sync"])
def test_a_database_outage_mid_run_and_its_recovery(
    tmp_path: Path, clean_postgres: DatabaseUrl, durability: str
) -> None:
    with fault_proxy(postgres.proxy_target(clean_postgres.url)) as proxy:
        through_proxy = DatabaseUrl.parse(postgres.proxied(clean_postgres.url, proxy.port))
        server = server_for(
            tmp_path, through_proxy, durability,
            ORI_DB_TIMEOUT_SECONDS="1", ORI_SUBSCRIBE_POLL_INTERVAL_MS="100",
        )  # fmt: skip
        load = Load(server.target, clients=4).start()
        load.wait_for(150)
        proxy.cut()
        outage_start = load.count()
        time.sleep(3)
        during = load.count() - outage_start
        codes_during = load.codes()
        assert _events_health(server.target) == health_pb2.HealthCheckResponse.NOT_SERVING
        proxy.heal()
        deadline = time.monotonic() + 30
        while _events_health(server.target) != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "the events service never recovered"
            time.sleep(0.1)
        recovered_at = load.count()
        load.wait_for_ok_since(recovered_at, 100)  # served again after recovery
        server.signal(signal.SIGTERM)
        assert server.wait(60) == 0, server.logs()
        load.stop()
    stored = stored_calls(clean_postgres)
    if durability == "async":
        assert during > 50  # the server kept answering while the database was away
        assert stored.answered == load.acknowledged()  # and wrote it all afterwards
    else:
        assert codes_during["UNAVAILABLE"] > 0  # refused rather than answered unrecorded
        assert load.acknowledged() <= stored.answered
    assert stored.unpaired() == set()
    assert stored.duplicated() == set()
    assert stored.event_ids_unique
