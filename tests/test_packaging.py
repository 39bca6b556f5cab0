"""The package's metadata tells the truth: licence, version (written once) and dependency floors."""

from __future__ import annotations

import ast
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
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import oriserver

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
GENERATED = ROOT / "src" / "oriserver" / "_generated"


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


def _protobuf_runtime_needed(module: Path) -> Version:
    """The version in the module's ValidateProtobufRuntimeVersion(domain, major, minor, patch, ...)."""
    for node in ast.walk(ast.parse(module.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "ValidateProtobufRuntimeVersion"
        ):
            major, minor, patch, suffix = (ast.literal_eval(a) for a in node.args[1:5])
            return Version(f"{major}.{minor}.{patch}{suffix}")
    raise AssertionError(f"{module.name} does not check its protobuf runtime")


def _grpc_needed(module: Path) -> Version:
    """The grpcio version the module refuses to import below (GRPC_GENERATED_VERSION)."""
    for node in ast.parse(module.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and ast.unparse(node.targets[0]) == "GRPC_GENERATED_VERSION"
        ):
            return Version(ast.literal_eval(node.value))
    raise AssertionError(f"{module.name} has no GRPC_GENERATED_VERSION")


def _declared_floors() -> dict[str, Version]:
    """The lower bound of every runtime and dev requirement in pyproject.toml."""
    lines = [*PYPROJECT["dependencies"], *PYPROJECT["optional-dependencies"]["dev"]]
    floors: dict[str, Version] = {}
    for requirement in map(Requirement, lines):
        for specifier in requirement.specifier:
            if specifier.operator == ">=":
                floors[canonicalize_name(requirement.name)] = Version(specifier.version)
    return floors


def test_the_declared_floors_are_the_versions_the_generated_code_needs() -> None:
    """Regenerating with a newer grpcio-tools fails here until pyproject.toml follows."""
    protobuf_needed = max(map(_protobuf_runtime_needed, GENERATED.rglob("*_pb2.py")))
    grpc_needed = max(map(_grpc_needed, GENERATED.rglob("*_pb2_grpc.py")))
    floors = _declared_floors()
    wanted = {
        "protobuf": protobuf_needed,
        "grpcio": grpc_needed,
        "grpcio-health-checking": grpc_needed,
        "grpcio-reflection": grpc_needed,
        "grpcio-tools": grpc_needed,  # the generator writes its own version into the code
    }
    too_low = {
        name: f">={floors[name]} but needs {need}"
        for name, need in wanted.items()
        if floors[name] < need
    }
    assert too_low == {}


@pytest.mark.parametrize("lock", ["runtime.txt", "dev.txt"])
def test_the_lock_files_satisfy_the_declared_requirements(lock: str) -> None:
    """A floor raised above a pinned version needs scripts/lock."""
    text = (ROOT / "requirements" / lock).read_text()
    pinned = {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.MULTILINE)
    }
    lines = PYPROJECT["dependencies"] + (
        PYPROJECT["optional-dependencies"]["dev"] if lock == "dev.txt" else []
    )
    environment = {"python_version": "3.11", "sys_platform": "linux", "extra": ""}
    unmet: list[str] = []
    for requirement in map(Requirement, lines):
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        locked = pinned.get(canonicalize_name(requirement.name))
        if locked is None or locked not in requirement.specifier:
            unmet.append(f"{requirement} (locked: {locked})")
    assert unmet == []
