"""Fixtures for the delivery checks: each Kustomize overlay rendered once per session."""

from __future__ import annotations

from typing import Any

import pytest

from tests.delivery.tools import OVERLAY_DIR, OVERLAYS, render_overlay


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Overlay name -> the resources `kubectl kustomize` renders for it."""
    return {name: render_overlay(OVERLAY_DIR / name) for name in OVERLAYS}
