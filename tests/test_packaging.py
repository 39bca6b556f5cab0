"""The package's metadata tells the truth: the licence it declares is the one it ships."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

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
