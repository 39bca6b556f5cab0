"""The reliability scenarios of ``scripts/reliability``, with short durations.

The same functions as the script (harness/reliability/scenarios.py), so the two cannot drift: real
``python -m oriserver`` processes, a real PostgreSQL, faults through a TCP proxy and real signals.
A scenario passes only if every check passes: acknowledged calls stored as the durability mode
promises, no duplicates, recovery on its own; ``result.explain()`` says which check failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.postgres import fresh_database
from harness.reliability.probes import require_loopback
from harness.reliability.scenarios import EVENTLESS, QUICK, SCENARIOS, Context
from oriserver.config.database import DatabaseUrl
from oriserver.store import migrate

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def ctx(tmp_path: Path, postgres_server_url: str) -> Context:
    require_loopback(postgres_server_url)

    @contextlib.contextmanager
    def database() -> Iterator[str]:
        with fresh_database(postgres_server_url) as url:
            migrate.upgrade(DatabaseUrl.parse(url))
            yield url

    return Context(QUICK, tmp_path, database)


# Speed is the benchmark's business, not a timed test's: here the readers scenarios must serve
# every reader and fail no call; their p99 against the 25 ms target is what
# `scripts/reliability --scenario readers,readers-native` judges and the README quotes.
TIMED = "p99 with readers"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_server_keeps_its_promises(ctx: Context, name: str) -> None:
    scenario, _ = SCENARIOS[name]
    result = scenario(ctx)
    assert result.checks, "the scenario checked nothing"
    failed = [c for c in result.failures() if not c.name.startswith(TIMED)]
    assert not failed, result.explain()
    assert result.held_rps > 0  # the load really ran...
    assert result.events_expected > 0 or name in EVENTLESS  # ...and was recorded
