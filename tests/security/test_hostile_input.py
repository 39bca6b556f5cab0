"""Malformed and random request bodies on every method: exact statuses, honest logs, no crash.

The calls bypass the generated stubs and send raw bytes. The seed corpus runs
byte for byte every time; hypothesis then explores around it with a fixed seed
(derandomize=True), so CI runs the same few thousand bodies on every run.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from harness.servers import ServerProcess, start_server
from oriserver._generated import mathhelper_pb2 as pb
from tests.security.conftest import assert_healthy, settled_rpc_count, wait_for_rpc_lines
from tests.security.corpus import SEEDS
from tests.security.oracle import (
    FACTORIAL,
    METHODS,
    SUMMATION,
    UNPARSEABLE,
    Outcomes,
    expected,
    reply_type,
)
from tests.security.payloads import payloads
from tests.support.engines import both_engines_per_module

engine = both_engines_per_module  # every test here runs on grpcio and on pygrpc-native

RawCall = Callable[..., bytes]
EXAMPLES_PER_METHOD = 1500


@pytest.fixture(scope="module")
def hostile_server(
    tmp_path_factory: pytest.TempPathFactory, engine: str
) -> Iterator[ServerProcess]:
    """One real server process per engine; its stdout holds the per-RPC log lines."""
    server = start_server(tmp_path_factory.mktemp("hostile"), {"ORI_SERVER_ENGINE": engine})
    yield server
    server.kill()


def check_call(call: RawCall, method: str, payload: bytes, outcomes: Outcomes) -> None:
    """Send one body, record what came back, and insist on exactly the expected answer."""
    want = expected(method, payload)
    details, reply = None, b""
    try:
        reply = call(payload, timeout=10)
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code, details = error.code(), error.details()
    outcomes.add(method, payload, code)
    shown = payload[:60]
    assert code == want.code, (
        f"{method} {shown!r}: got {code.name} ({details}), want {want.code.name}"
    )
    if want.details is not None:
        assert details == want.details, f"{method} {shown!r}: {details}"
    if want.reply is not None:
        assert reply_type(method).FromString(reply) == want.reply, f"{method} {shown!r}"


def event_counts(server: ServerProcess) -> Counter[tuple[str, str]]:
    """(method, event_type) counts in the server's event store (SQLite in its working dir)."""
    database = server.log_path.parent / "oriserver.db"
    if not database.exists():
        return Counter()
    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT method, event_type, count(*) FROM events GROUP BY 1, 2")
        return Counter({(method, kind): n for method, kind, n in rows})


def settled_event_counts(server: ServerProcess) -> Counter[tuple[str, str]]:
    """Event counts once the writer has flushed what earlier calls left in its buffer."""
    previous = event_counts(server)
    while True:
        time.sleep(0.3)  # several flush intervals
        current = event_counts(server)
        if current == previous:
            return current
        previous = current


def check_server_records(
    server: ServerProcess, outcomes: Outcomes, before: int, events_before: Counter[tuple[str, str]]
) -> None:
    """What the server recorded about these calls must match what the callers got.

    The per-RPC log: one line per call that reached a handler, with the same status
    code, so an unparseable body is never logged as OK. The event store: exactly the
    bodies answered OK are recorded as successful calculations, the ones answered with
    a calculation error as failed ones, and nothing else is recorded at all.
    """
    reached = outcomes.reached_handlers()
    lines = wait_for_rpc_lines(server, lambda lines: len(lines) >= before + len(reached))
    logged = Counter((line["method"], line["code"]) for line in lines[before:])
    answered = Counter((call.method, call.code.name) for call in reached)
    assert logged == answered
    for method in (SUMMATION, FACTORIAL):
        assert logged[(method, "OK")] == len(outcomes.ok_payloads(method))
    wanted: Counter[tuple[str, str]] = Counter()
    for call in outcomes.calls:
        name = {SUMMATION: "Summation", FACTORIAL: "Factorial"}.get(call.method)
        if name is None or call.code.name not in {"OK", "OUT_OF_RANGE", "INVALID_ARGUMENT"}:
            continue
        if expected(call.method, call.payload).details == UNPARSEABLE:
            continue  # refused before any calculation: nothing to record
        wanted[(name, "CalculationRequested")] += 1
        outcome = "CalculationSucceeded" if call.code == grpc.StatusCode.OK else "CalculationFailed"
        wanted[(name, outcome)] += 1
    deadline = time.monotonic() + 15
    while (
        recorded := event_counts(server) - events_before
    ) != wanted and time.monotonic() < deadline:
        time.sleep(0.1)  # the writer flushes in the background
    assert recorded == wanted


def assert_still_serving(server: ServerProcess) -> None:
    assert server.process.poll() is None, "the server process died"
    assert_healthy(server.target)


@pytest.mark.parametrize("method", METHODS)
def test_every_seed_gets_exactly_the_expected_status(
    method: str, hostile_server: ServerProcess
) -> None:
    outcomes = Outcomes()
    before = settled_rpc_count(hostile_server)
    events_before = settled_event_counts(hostile_server)
    with grpc.insecure_channel(hostile_server.target) as channel:
        call = channel.unary_unary(method)
        for payload in SEEDS.values():
            check_call(call, method, payload, outcomes)
    codes = {c.code for c in outcomes.calls}
    # The corpus covers every class of answer: parsed, unparseable and oversized.
    assert {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT} <= codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    check_server_records(hostile_server, outcomes, before, events_before)
    assert_still_serving(hostile_server)


@pytest.mark.parametrize("method", METHODS)
def test_random_bodies_get_exactly_the_expected_status(
    method: str, hostile_server: ServerProcess
) -> None:
    outcomes = Outcomes()
    before = settled_rpc_count(hostile_server)
    events_before = settled_event_counts(hostile_server)
    with grpc.insecure_channel(hostile_server.target) as channel:
        call = channel.unary_unary(method)

        @settings(
            max_examples=EXAMPLES_PER_METHOD,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(payload=payloads)
        def probe(payload: bytes) -> None:
            check_call(call, method, payload, outcomes)

        probe()
    codes = Counter(c.code.name for c in outcomes.calls)
    # The generator must really produce both kinds, or the test proves little.
    assert codes["OK"] > 100, codes
    assert codes["INVALID_ARGUMENT"] > 100, codes
    check_server_records(hostile_server, outcomes, before, events_before)
    assert_still_serving(hostile_server)


def test_unparseable_bodies_on_streaming_methods_get_invalid_argument(
    hostile_server: ServerProcess,
) -> None:
    unparseable = [p for p in SEEDS.values() if expected(SUMMATION, p).details == UNPARSEABLE]
    with grpc.insecure_channel(hostile_server.target) as channel:
        watch = channel.unary_stream("/grpc.health.v1.Health/Watch")
        reflect = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        )
        for payload in unparseable:
            for responses in (watch(payload, timeout=5), reflect(iter([payload]), timeout=5)):
                with pytest.raises(grpc.RpcError) as caught:
                    list(responses)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert caught.value.details() == UNPARSEABLE
    assert_still_serving(hostile_server)


def test_a_valid_body_sent_raw_gets_the_same_answer_as_through_the_stub(
    hostile_server: ServerProcess,
) -> None:
    """Guards the raw-bytes path itself: if it were broken, every test above would be moot."""
    with grpc.insecure_channel(hostile_server.target) as channel:
        raw = channel.unary_unary(SUMMATION)(
            pb.SummationInput(first=-3, last=10).SerializeToString(), timeout=5
        )
    assert pb.SummationResult.FromString(raw) == pb.SummationResult(result=7, first=-3, last=10)
