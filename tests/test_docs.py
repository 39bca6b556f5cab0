"""The README and the write-ups stay true to the code: config table, links, test command."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.delivery.test_docs_links import relative_links

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]


def _config_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_table", ROOT / "scripts" / "config_table.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_configuration_table_matches_the_settings_registry() -> None:
    readme = (ROOT / "README.md").read_text()
    assert _config_table().replaced(readme) == readme, "run scripts/config_table.py --write"


def test_every_registered_variable_appears_in_the_readme() -> None:
    _config_table().table()
    from oriserver.config.env import REGISTRY

    readme = (ROOT / "README.md").read_text()
    missing = [name for name in REGISTRY if f"| `{name}` |" not in readme]
    assert missing == []


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(scripts/\w+)", quick_start, flags=re.M)
    assert commands == ["scripts/serve", "scripts/test"]
    assert re.search(r"^exec scripts/test\b", (ROOT / ".ci" / "run").read_text(), flags=re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    for link in relative_links(page):
        resolved = (page.parent / link).resolve()
        assert resolved.is_relative_to(ROOT), f"{link} leaves the repository"
        assert resolved.exists(), f"{page.name}: {link} does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_name_no_machine_paths(page: Path) -> None:
    text = page.read_text()
    assert str(ROOT) not in text
    assert "/work/" not in text
