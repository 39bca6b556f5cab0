"""The tier's one test that is collected everywhere: it is skipped, with what to install,
where no container engine exists, so the rest of the tier is never skipped silently."""

from __future__ import annotations

import pytest

from tests.containers.engine import Engine

pytestmark = pytest.mark.containers


def test_a_container_engine_answers(container_engine: Engine) -> None:
    assert container_engine.out("version", "--format", "{{.Client.Version}}")
