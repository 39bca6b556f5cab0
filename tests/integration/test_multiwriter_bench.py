"""bench/multiwriter.py runs: two writer processes and an archiver on a real PostgreSQL,
and its gap-safety column holds (totals equal the counts, archived rows included)."""

from __future__ import annotations

import pytest

from bench import multiwriter

pytestmark = pytest.mark.postgres


def test_two_writers_and_an_archiver_keep_the_totals_equal_to_the_counts(
    postgres_server_url: str,
) -> None:
    (row,) = multiwriter.run(postgres_server_url, writers=(2,), seconds=1.0, archive=True)
    assert row.events > 0
    assert len(row.p99_flush_ms) == 2
    assert row.totals_equal_counts
    assert row.archived_per_s is not None
    assert "| 2 | 1000 |" in multiwriter.table([row])
