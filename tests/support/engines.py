"""Which serving engine the tests run a server on.

Modules whose features exist on both engines opt in with ``engine = both_engines``: every test
there then runs once on grpcio and once on pygrpc-native. Everything else runs on the default
engine. The engine reaches in-process servers through the ``settings`` fixture, and the subprocess
servers that ``harness.servers`` starts through its base environment (tests/conftest.py).
"""

from __future__ import annotations

import pytest

ENGINES = ("grpcio", "native")


@pytest.fixture(params=ENGINES, name="engine")
def both_engines(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=ENGINES, name="engine", scope="module")
def both_engines_per_module(request: pytest.FixtureRequest) -> str:
    """The same, for modules whose servers are module-scoped fixtures."""
    return str(request.param)


def grpcio_only(reason: str) -> pytest.MarkDecorator:
    """For a test of a feature the native engine does not have (its refusal is tested instead)."""
    return pytest.mark.grpcio_only(reason)


def native_xfail(reason: str) -> pytest.MarkDecorator:
    """For a test whose native variant shows a known defect of the native engine: it is
    expected to fail there (strictly: once the engine is fixed, the marker must go)."""
    return pytest.mark.native_xfail(reason)
