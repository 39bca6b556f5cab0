"""Every handler thread is running before the first call, on both engines.

A burst of subscriptions used to start a hundred threads while calculations waited
behind them (see ``started_pool`` in src/oriserver/rpc/engines.py)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from oriserver.rpc.engines import create_engine_server


def _pool_names(threads: list[threading.Thread]) -> Counter[str]:
    """How many threads each pool prefix names (a pool's threads are PREFIX_N)."""
    return Counter(thread.name.rpartition("_")[0] for thread in threads)


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("grpcio", {"rpc": 3, "rpc-stream": 5, "rpc-side": 2}),
        ("native", {"rpc": 8}),
    ],
)
def test_each_pool_starts_all_its_threads_when_the_server_is_created(
    engine: str, expected: dict[str, int]
) -> None:
    # Thread objects, not idents: the system reuses a finished thread's ident.
    before = set(threading.enumerate())
    created = create_engine_server(engine, threads=3, stream_threads=5, options=[])
    try:
        new = _pool_names([t for t in threading.enumerate() if t not in before])
        assert {name: new[name] for name in expected} == expected
    finally:
        created.shutdown_pools()
        created.server.stop(None)
