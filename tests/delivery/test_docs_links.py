"""The delivery write-ups link only to files that exist in the repository, and cover their topics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from tests.delivery.tools import ROOT

DOCS = ("twelve-factor.md", "cloud-native.md", "outside-access.md", "deployment.md")


def _walk(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        yield from _walk(token.children or [])


def relative_links(path: Path) -> list[str]:
    """Targets of every Markdown link and image that is not a URL or an in-page anchor."""
    targets = []
    for token in _walk(MarkdownIt("commonmark").enable("table").parse(path.read_text())):
        target = str(token.attrGet("href") or token.attrGet("src") or "")
        if token.type in {"link_open", "image"} and target:
            parts = urlsplit(target)
            if not parts.scheme and not target.startswith("#"):
                targets.append(unquote(parts.path))
    return targets


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_in_the_document_resolves_to_a_repository_file(doc: str) -> None:
    path = ROOT / "docs" / doc
    links = relative_links(path)
    assert len(links) >= 5, "each write-up points at the files it describes"
    for link in links:
        assert not link.startswith("/"), f"{doc}: {link} is not relative"
        resolved = (path.parent / link).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc}: {link} leaves the repository"
        assert resolved.exists(), f"{doc}: {link} does not exist"


@pytest.mark.parametrize("doc", DOCS)
def test_the_document_names_no_machine_paths(doc: str) -> None:
    text = (ROOT / "docs" / doc).read_text()
    assert str(ROOT) not in text
    assert "/home/" not in text


def test_the_link_check_catches_a_missing_file(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[a](missing.md) [b](https://example.com) [c](#here) ![d](img/x.png)\n")
    assert relative_links(page) == ["missing.md", "img/x.png"]


def test_the_twelve_factor_write_up_takes_the_factors_one_by_one_in_order() -> None:
    text = (ROOT / "docs" / "twelve-factor.md").read_text()
    numerals = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]
    headings = [line.split(".")[0][3:] for line in text.splitlines() if line.startswith("## ")]
    assert headings == numerals
