"""Fixtures of the container tier: the engine, the substitute bases and the project's images.

Without podman or Docker the tier's modules are not collected and test_engine.py's one test is
skipped instead, so `pytest -rs` shows a single line saying what to install; with an engine the
images are built or taken from the cache and the tier's wall time is printed at the end.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers import images
from tests.containers.engine import Engine, find_engine, why_not_here

STAND_IN = "test_engine.py"
reason_to_skip = functools.cache(why_not_here)


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """Without an engine, only the stand-in test is collected (and skipped with the reason)."""
    if collection_path.name.startswith("test_") and collection_path.name != STAND_IN:
        return True if reason_to_skip() else None
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    timing = images.timing_of(terminalreporter.config)
    if "started" not in timing:
        return
    seconds = time.monotonic() - float(str(timing["started"]))
    builds = timing.get("builds")
    detail = builds.summary() if isinstance(builds, images.Builds) else ""
    terminalreporter.write_line(
        f"container tier: {seconds:.0f} s" + (f" ({detail})" if detail else "")
    )
    if "sizes" in timing:
        terminalreporter.write_line(f"container image sizes: {timing['sizes']}")


@pytest.fixture(scope="session")
def container_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    reason = reason_to_skip()
    if reason:
        pytest.skip(reason)
    found = find_engine()
    assert found is not None
    images.timing_of(request.config)["started"] = time.monotonic()
    try:
        yield found
    finally:
        problems = found.cleanup()
    assert not problems, "left behind: " + "; ".join(problems)


@pytest.fixture(scope="session")
def builds(request: pytest.FixtureRequest) -> images.Builds:
    record = images.Builds()
    images.timing_of(request.config)["builds"] = record
    return record


@pytest.fixture(scope="session")
def debian(container_engine: Engine, builds: images.Builds) -> str:
    return images.debian_rootfs(container_engine, builds)


@pytest.fixture(scope="session")
def python_base(container_engine: Engine, builds: images.Builds, debian: str) -> str:
    return images.python_base(container_engine, builds)


@pytest.fixture(scope="session")
def postgres_image(container_engine: Engine, builds: images.Builds, debian: str) -> str:
    return images.postgres_base(container_engine, builds)


@pytest.fixture(scope="session")
def production_image(container_engine: Engine, builds: images.Builds, python_base: str) -> str:
    return images.project_image(
        container_engine, builds, images.PRODUCTION_IMAGE, images.ROOT / "Dockerfile"
    )


@pytest.fixture(scope="session")
def development_image(container_engine: Engine, builds: images.Builds, python_base: str) -> str:
    return images.project_image(
        container_engine, builds, images.DEVELOPMENT_IMAGE, images.ROOT / "Dockerfile.dev"
    )
