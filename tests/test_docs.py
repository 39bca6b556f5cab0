"""The README and the write-ups stay true to the code: config table, links, test command,
and what they say about the images, compose stacks, workflow and overlays."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.delivery.test_docs_links import relative_links
from tests.delivery.tools import COMPOSE_FILES, OVERLAY_DIR, WORKFLOW, render_overlay

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


# --- What the write-ups say about the delivery files, checked against the files ------------


def _section(page: str, heading: str) -> str:
    """The text under the `## {heading}...` heading of docs/{page}, whitespace joined."""
    text = (ROOT / "docs" / page).read_text()
    body = text.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    return " ".join(body.split())


def _sentences(text: str) -> list[str]:
    return re.split(r"(?<=\.)\s+(?=[A-Z\[`])", text)


def _sentence_with(text: str, needle: str) -> str:
    matches = [sentence for sentence in _sentences(text) if needle in sentence]
    assert len(matches) == 1, f"expected one sentence with {needle!r}, found {matches}"
    return matches[0]


def _compose_services(file: str) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / file).read_text())["services"]
    return services


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_twelve_factor_names_the_dockerfile_each_compose_stack_builds(file: str) -> None:
    built = {s["build"]["dockerfile"] for s in _compose_services(file).values() if "build" in s}
    assert built, f"{file} builds no image"
    sentence = _sentence_with(_section("twelve-factor.md", "I. Codebase"), f"](../{file})")
    for dockerfile in built:
        assert f"`{dockerfile}`" in sentence, sentence


def test_twelve_factor_says_docker_compose_up_builds_exactly_when_a_stack_can_build() -> None:
    builds = any(
        "build" in service for file in COMPOSE_FILES for service in _compose_services(file).values()
    )
    sentence = _sentence_with(_section("twelve-factor.md", "V. Build"), "`docker-compose up`")
    assert ("builds the image" in sentence) == builds, sentence


def test_twelve_factor_tells_where_a_release_tag_is_pinned_and_that_it_is_not_committed() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    deploy = workflow["jobs"]["deploy"]
    script = "\n".join(step.get("run", "") for step in deploy["steps"])
    assert "kustomize edit set image" in script
    assert not re.search(r"\bgit (commit|push)\b", script)
    assert "write" not in {**workflow["permissions"], **deploy.get("permissions", {})}.values()
    overlay = yaml.safe_load((OVERLAY_DIR / "prod" / "kustomization.yaml").read_text())
    (image,) = overlay["images"]
    release = _sentence_with(_section("twelve-factor.md", "V. Build"), "That edit is")
    assert "not committed" in release
    assert f"`{image['newName']}:{image['newTag']}`" in release, "the placeholder, as it is"


def test_cloud_native_names_every_kind_the_monitoring_overlay_adds() -> None:
    def kinds(overlay: str) -> set[str]:
        return {doc["kind"] for doc in render_overlay(OVERLAY_DIR / overlay)}

    added = kinds("prod-monitoring") - kinds("prod")
    assert added >= {"ServiceMonitor", "PrometheusRule"}
    text = " ".join((ROOT / "docs" / "cloud-native.md").read_text().split())
    for kind in added:
        mentions = [sentence for sentence in _sentences(text) if kind in sentence]
        assert mentions, f"cloud-native.md does not mention the {kind}"
        assert not any("not included" in sentence for sentence in mentions), mentions
