"""The package's metadata tells the truth: its licence and its version, written once."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest

import oriserver

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


class Wheel:
    """A wheel built from the working tree the way the image builds it."""

    def __init__(self, path: Path) -> None:
        self.archive = zipfile.ZipFile(path)
        self.dist_info = next(
            name.split("/")[0] for name in self.archive.namelist() if "dist-info/" in name
        )

    def read(self, name: str) -> str:
        return self.archive.read(f"{self.dist_info}/{name}").decode()

    @property
    def metadata(self) -> Message:
        return Parser().parsestr(self.read("METADATA"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    folder = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    build = ["wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(folder), str(ROOT)]
    subprocess.run([*pip, *build], check=True, timeout=120)
    return Wheel(next(folder.glob("oriserver-*.whl")))


def test_the_declared_licence_is_the_one_in_the_licence_file() -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["license-files"] == ["LICENSE"]
    assert licence.splitlines()[0] == f"{PYPROJECT['license']} License"
    assert "Copyright (c) 2026 the oriserver authors" in licence


def test_the_wheel_declares_the_licence_and_ships_its_text(wheel: Wheel) -> None:
    assert wheel.metadata["License-Expression"] == PYPROJECT["license"]
    assert wheel.metadata.get_all("License-File") == ["LICENSE"]
    assert wheel.read("licenses/LICENSE") == (ROOT / "LICENSE").read_text()


def test_the_version_is_written_in_one_file_only() -> None:
    """pyproject.toml takes the version from the package, so the two cannot disagree."""
    assert "version" not in PYPROJECT
    assert "version" in PYPROJECT["dynamic"]
    literal = re.compile(rf"(?<![\w.]){re.escape(oriserver.__version__)}(?![\w.])")
    sources = [ROOT / "pyproject.toml"] + [
        path
        for folder in ("src", "tests", "scripts", "bench")
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    holders = [
        path.relative_to(ROOT).as_posix()
        for path in sources
        if literal.search(path.read_text(errors="replace"))
    ]
    assert holders == ["src/oriserver/__init__.py"]


@pytest.mark.parametrize("program", ["oriserver", "ori"])
def test_both_commands_print_the_installed_version(program: str) -> None:
    command = Path(sys.executable).parent / program
    result = subprocess.run(
        [str(command), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{program} {metadata.version('oriserver')}\n"


def test_the_installed_metadata_and_a_built_wheel_carry_the_package_version(
    wheel: Wheel,
) -> None:
    assert metadata.version("oriserver") == oriserver.__version__, "reinstall: pip install -e ."
    assert wheel.metadata["Version"] == oriserver.__version__
