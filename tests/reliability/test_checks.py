"""The script's own logic, without servers: the checks fail when the events table breaks a
promise, the command line sets its knobs, and a database off this machine is refused.

The scenarios pass on a healthy server, so these tests feed the shared checks the tables a broken
server would leave behind: a lost call, a duplicate, half a call, a stranger.
"""

from __future__ import annotations

from collections import Counter

import pytest

from harness.event_table import StoredCalls
from harness.reliability.cli import _options, _parser
from harness.reliability.probes import require_loopback
from harness.reliability.verdict import Result, check_events


def stored(requested: list[int], outcomes: list[int], *, ids_unique: bool = True) -> StoredCalls:
    return StoredCalls(Counter(requested), Counter(outcomes), ids_unique)


def verdict(table: StoredCalls, acknowledged: set[int], **kwargs: set[int]) -> Result:
    result = Result("t", 0.0, None, Counter(), 0, 0, "-")
    check_events(result, table, acknowledged=acknowledged, attempted=set(range(1, 11)), **kwargs)
    return result


def failed(result: Result) -> set[str]:
    return {c.name for c in result.failures()}


def test_a_table_that_keeps_every_promise_passes() -> None:
    result = verdict(stored([1, 2, 3], [1, 2, 3]), {1, 2})  # 3: stored, its answer was lost
    assert result.passed, result.explain()
    assert (result.events_expected, result.events_stored) == (4, 6)


def test_an_acknowledged_call_without_its_events_fails() -> None:
    assert failed(verdict(stored([1], [1]), {1, 2})) == {"every acknowledged call stored"}


def test_a_lost_tail_passes_only_inside_the_window() -> None:
    table = stored([1, 2], [1, 2])
    name = "acknowledged calls stored, except the unflushed tail"
    assert verdict(table, {1, 2, 3, 4}, may_miss={3, 4}).passed
    assert failed(verdict(table, {1, 2, 3, 4}, may_miss={4})) == {name}


@pytest.mark.parametrize(
    "table",
    [
        stored([1, 1], [1]),  # the request twice
        stored([1], [1, 1]),  # the outcome twice
        stored([1], [1], ids_unique=False),
    ],
)
def test_a_duplicate_fails(table: StoredCalls) -> None:
    assert "no duplicates" in failed(verdict(table, {1}))


def test_half_a_call_fails() -> None:
    assert failed(verdict(stored([1, 2], [1]), {1})) == {"no half-recorded call"}


def test_events_of_a_call_nobody_sent_fail() -> None:
    assert failed(verdict(stored([1, 99], [1, 99]), {1})) == {"nothing stored that was never sent"}


def test_the_command_line_sets_the_knobs_and_rejects_unknown_scenarios() -> None:
    args = _parser("reliability").parse_args(
        ["--quick", "--soak", "7", "--scenario", "steady,sigterm"]
    )
    options = _options(args)
    assert (options.soak_s, options.warmup_s) == (7.0, 1.5)
    assert args.scenario == ["steady", "sigterm"]
    with pytest.raises(SystemExit):
        _parser("reliability").parse_args(["--scenario", "nope"])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:@/postgres?host=/tmp/pg",  # pgserver's Unix socket
        "postgresql://ori@localhost:5432/ori",
        "postgresql://ori@127.0.0.1/ori",
        "postgresql://ori@[::1]:5432/ori",
    ],
)
def test_a_local_database_is_accepted(url: str) -> None:
    require_loopback(url)


def test_a_remote_database_is_refused() -> None:
    with pytest.raises(ValueError, match="not on loopback"):
        require_loopback("postgresql://ori@db.example.com:5432/ori")
