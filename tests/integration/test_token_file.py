"""The events-API tokens file on disk: changes are picked up, unusable ones are not."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from oriserver.config import ConfigError
from oriserver.rpc.tokens import TokenFile

FIRST = "first-token-0123456789abcdef"
SECOND = "second-token-0123456789abcdef"


def write(path: Path, content: str, mode: int = 0o600) -> None:
    """Replace the file at once, as a Secret volume update does (a new inode)."""
    new = path.with_suffix(".new")
    new.write_text(content)
    os.chmod(new, mode)
    new.replace(path)


def test_a_changed_file_is_read_on_the_next_check(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    write(path, f"{FIRST}\n")
    tokens = TokenFile(path)
    assert tokens.current().match(FIRST)
    write(path, f"{SECOND}\n")
    assert tokens.current().match(FIRST) is None
    assert tokens.current().match(SECOND)
    assert tokens.reloads == 1


@pytest.mark.parametrize(
    ("content", "mode", "problem"),
    [
        ("\n# all removed\n", 0o600, "holds no token"),
        (f"{SECOND}\n", 0o644, "readable by every user"),
        ("too short\n", 0o600, "line 1"),
    ],
)
def test_an_unusable_change_keeps_the_previous_tokens_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, mode: int, problem: str
) -> None:
    path = tmp_path / "tokens"
    write(path, f"{FIRST}\n")
    tokens = TokenFile(path)
    caplog.set_level(logging.WARNING, logger="oriserver.access")
    write(path, content, mode)
    assert tokens.current().match(FIRST)
    assert tokens.current().match(SECOND) is None
    (warning,) = [r for r in caplog.records if r.name == "oriserver.access"]
    assert problem in warning.problem  # type: ignore[attr-defined]
    assert FIRST not in caplog.text
    assert SECOND not in caplog.text
    write(path, f"{SECOND}\n")  # fixed: the next check takes it
    assert tokens.current().match(SECOND)


def test_a_file_gone_before_the_server_is_built_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ORI_EVENTS_API_TOKENS_FILE: cannot read"):
        TokenFile(tmp_path / "absent")
