"""Fixtures of the container tier: the engine, the substitute bases and the project's images.

Without podman or Docker every test here is skipped with one reason (`pytest -rs` prints it
once, with what to install); with one, the images are built or taken from the cache and the
tier's wall time is printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.containers import images
from tests.containers.engine import INSTALL_HINT, Engine, find_engine

TIMING = pytest.StashKey[dict[str, object]]()


def _timing(config: pytest.Config) -> dict[str, object]:
    return config.stash.setdefault(TIMING, {})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    timing = _timing(terminalreporter.config)
    if "started" not in timing:
        return
    seconds = time.monotonic() - float(str(timing["started"]))
    builds = timing.get("builds")
    detail = builds.summary() if isinstance(builds, images.Builds) else ""
    terminalreporter.write_line(f"container tier: {seconds:.0f} s ({detail})")


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    found = find_engine()
    if found is None:
        pytest.skip(INSTALL_HINT)
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        pytest.skip(
            "container tier skipped: the substitute base images need debootstrap, run as root "
            "(apt-get install debootstrap)"
        )
    _timing(request.config)["started"] = time.monotonic()
    try:
        yield found
    finally:
        problems = found.cleanup()
    assert not problems, "left behind: " + "; ".join(problems)


@pytest.fixture(scope="session")
def builds(request: pytest.FixtureRequest) -> images.Builds:
    record = images.Builds()
    _timing(request.config)["builds"] = record
    return record


@pytest.fixture(scope="session")
def python_base(engine: Engine, builds: images.Builds) -> str:
    images.debian_rootfs(engine, builds)
    return images.python_base(engine, builds)


@pytest.fixture(scope="session")
def postgres_image(engine: Engine, builds: images.Builds) -> str:
    images.debian_rootfs(engine, builds)
    return images.postgres_base(engine, builds)


@pytest.fixture(scope="session")
def production_image(engine: Engine, builds: images.Builds, python_base: str) -> str:
    return images.project_image(
        engine, builds, images.PRODUCTION_IMAGE, images.ROOT / "Dockerfile"
    )


@pytest.fixture(scope="session")
def development_image(engine: Engine, builds: images.Builds, python_base: str) -> str:
    return images.project_image(
        engine, builds, images.DEVELOPMENT_IMAGE, images.ROOT / "Dockerfile.dev"
    )
