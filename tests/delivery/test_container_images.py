"""Both Dockerfiles pass hadolint, build what they claim, and keep the build context clean."""

from __future__ import annotations

import re
import shutil
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import oriserver.config.settings  # noqa: F401 - registers every server variable
from oriserver.config.env import REGISTRY
from tests.delivery.tools import (
    DOCKERFILES,
    ROOT,
    Instruction,
    base_image,
    dockerfile_global_args,
    dockerfile_stages,
    dockerignore_excludes,
    dockerignore_rules,
    exec_form,
    explain,
    run_tool,
)

BASE_IMAGE = "python:3.11-slim"
REQUIRED_LABELS = (
    "org.opencontainers.image.title:text",
    "org.opencontainers.image.description:text",
    "org.opencontainers.image.licenses:spdx",
)


def hadolint(path: Path) -> list[str]:
    """Arguments for the strictest run: any finding, even a style one, fails.

    No rule is ignored, here or inline in the Dockerfiles.
    """
    labels = [arg for label in REQUIRED_LABELS for arg in ("--require-label", label)]
    return ["--no-color", "--failure-threshold", "style", *labels, str(path)]


def instructions(stage: list[Instruction], keyword: str) -> list[str]:
    return [i.arguments for i in stage if i.keyword == keyword]


def copy_sources(stage: list[Instruction]) -> list[str]:
    """Paths a stage COPYs from the build context (not from other stages)."""
    sources = []
    for arguments in instructions(stage, "COPY"):
        words = arguments.split()
        if any(word.startswith("--from=") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources += paths[:-1]
    return sources


def project_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts: dict[str, str] = pyproject["project"]["scripts"]
    return scripts


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_dockerfile_passes_hadolint_with_any_finding_failing(dockerfile: str) -> None:
    result = run_tool("hadolint", *hadolint(ROOT / dockerfile))
    assert result.returncode == 0, explain(result)
    assert "hadolint ignore" not in (ROOT / dockerfile).read_text()


def test_hadolint_fails_on_an_untagged_base_run_as_root(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install grpcio\nUSER root\n")
    result = run_tool("hadolint", *hadolint(bad))
    assert result.returncode != 0, explain(result)
    for rule in ("DL3006", "DL3013", "DL3002", "DL3049"):
        assert rule in result.stdout, explain(result)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_stage_starts_from_the_same_pinned_slim_python(dockerfile: str) -> None:
    # The base is a build argument (tests/containers/ substitutes one where no registry is
    # reachable); its default must be the official image, and every stage must use it.
    global_args = dockerfile_global_args(ROOT / dockerfile)
    assert global_args == {"PYTHON_IMAGE": BASE_IMAGE}
    stages = dockerfile_stages(ROOT / dockerfile)
    for stage in stages:
        assert stage[0].arguments.split()[0] == "${PYTHON_IMAGE}", stage[0]
        image = base_image(stage, global_args)
        assert image == BASE_IMAGE, f"{dockerfile}: FROM {image}"


def test_the_production_image_is_multi_stage_and_ships_no_build_tools() -> None:
    stages = dockerfile_stages(ROOT / "Dockerfile")
    assert len(stages) >= 2
    final = stages[-1]
    copied = instructions(final, "COPY")
    assert copied == ["--from=builder /opt/venv /opt/venv"]
    for command in instructions(final, "RUN"):
        for installer in ("apt-get", "apk ", "pip ", "gcc", "build-essential"):
            assert installer not in command, f"final stage runs {installer}: {command}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_locked_dependencies_install_in_their_own_layer_before_the_source_arrives(
    dockerfile: str,
) -> None:
    first = dockerfile_stages(ROOT / dockerfile)[0]
    steps = [i for i in first if i.keyword in {"COPY", "RUN"}]
    assert steps[0] == Instruction("COPY", "requirements/ requirements/")
    assert steps[1].keyword == "RUN"
    assert "--require-hashes" in steps[1].arguments
    assert "-r requirements/runtime.txt" in steps[1].arguments
    later = " ".join(i.arguments for i in steps[2:] if i.keyword == "COPY")
    assert "src/" in later


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_image_runs_as_a_fixed_numeric_non_root_user(dockerfile: str) -> None:
    final = dockerfile_stages(ROOT / dockerfile)[-1]
    user = instructions(final, "USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), f"USER {user} is not numeric"
    assert gid.isdigit(), f"USER {user} has no numeric group"
    assert int(uid) > 0
    assert int(gid) > 0
    created = " ".join(instructions(final, "RUN"))
    assert f"--uid {uid}" in created
    assert f"--gid {gid}" in created


def test_the_image_serves_by_default_and_runs_admin_commands_as_arguments() -> None:
    final = dockerfile_stages(ROOT / "Dockerfile")[-1]
    entrypoint = exec_form(instructions(final, "ENTRYPOINT")[-1])
    assert entrypoint == ["oriserver"]
    assert entrypoint[0] in project_scripts()
    assert exec_form(instructions(final, "CMD")[-1]) == ["serve"]
    healthcheck = instructions(final, "HEALTHCHECK")[-1]
    assert healthcheck.endswith('CMD ["ori", "health"]')
    assert "ori" in project_scripts()


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"], ["db", "wait"]])
def test_the_commands_the_image_compose_and_kubernetes_run_exist(command: list[str]) -> None:
    result = run_tool("oriserver", *command, "--help")
    assert result.returncode == 0, explain(result)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_image_exposes_the_default_grpc_and_metrics_ports(dockerfile: str) -> None:
    final = dockerfile_stages(ROOT / dockerfile)[-1]
    exposed = {port for line in instructions(final, "EXPOSE") for port in line.split()}
    defaults = {REGISTRY["ORI_PORT"].default, REGISTRY["ORI_METRICS_PORT"].default}
    assert exposed == defaults


def test_the_oci_labels_are_set() -> None:
    final = dockerfile_stages(ROOT / "Dockerfile")[-1]
    labels = " ".join(instructions(final, "LABEL"))
    for label in REQUIRED_LABELS:
        assert label.split(":")[0] + "=" in labels


def test_the_development_image_restarts_the_server_on_python_changes() -> None:
    final = dockerfile_stages(ROOT / "Dockerfile.dev")[-1]
    command = exec_form(instructions(final, "ENTRYPOINT")[-1]) + exec_form(
        instructions(final, "CMD")[-1]
    )
    assert command[0] == "watchfiles"
    assert command[command.index("--filter") + 1] == "python"
    assert command[-2:] == ["oriserver serve", "/app/src"]
    installs = " ".join(instructions(final, "RUN"))
    assert "--editable ." in installs
    assert "pip check" in installs


def _locked(lock: str) -> set[str]:
    text = (ROOT / "requirements" / lock).read_text()
    return {canonicalize_name(m) for m in re.findall(r"^([A-Za-z0-9._-]+)==", text, re.MULTILINE)}


def _requirement_closure(name: str) -> set[str]:
    """The distribution and everything it needs on Linux with Python 3.11 (no extras)."""
    environment = {"python_version": "3.11", "sys_platform": "linux", "extra": ""}
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = canonicalize_name(pending.pop())
        if current in seen:
            continue
        seen.add(current)
        for line in metadata.requires(current) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                pending.append(requirement.name)
    return seen


def test_the_development_image_adds_watchfiles_and_all_it_needs_to_the_runtime_lock() -> None:
    final = dockerfile_stages(ROOT / "Dockerfile.dev")[-1]
    (declared,) = [a for a in instructions(final, "ARG") if a.startswith("RELOAD_PACKAGES=")]
    extra = {canonicalize_name(n) for n in declared.partition("=")[2].strip('"').split()}
    assert "watchfiles" in extra
    assert extra <= _locked("dev.txt")
    available = _locked("runtime.txt") | _locked("build.txt") | extra
    missing = _requirement_closure("watchfiles") - available
    assert missing == set(), f"add {sorted(missing)} to RELOAD_PACKAGES in Dockerfile.dev"
    installs = " ".join(instructions(final, "RUN"))
    assert "requirements/dev.txt $RELOAD_PACKAGES" in installs


def test_the_wheel_builds_offline_from_exactly_what_the_dockerfile_copies(
    tmp_path: Path,
) -> None:
    builder = dockerfile_stages(ROOT / "Dockerfile")[0]
    context = tmp_path / "context"
    for source in copy_sources(builder):
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]")
            )
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(origin, context / source)
    wheels = tmp_path / "wheels"
    result = run_tool(
        "python",
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--disable-pip-version-check",
        "--quiet",
        "--wheel-dir",
        str(wheels),
        str(context),
    )
    assert result.returncode == 0, explain(result)
    (wheel,) = wheels.glob("oriserver-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert "oriserver/cli/server_main.py" in names
    assert "oriserver/_generated/mathhelper_pb2.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), (
        "the image ships the licence"
    )
    # `oriserver db upgrade` needs the Alembic scripts inside the package.
    assert "oriserver/store/migrations/env.py" in names
    assert "oriserver/store/migrations/script.py.mako" in names
    assert any(n.startswith("oriserver/store/migrations/versions/0") for n in names)
    for script in project_scripts():
        assert f"{script} = " in scripts


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".github/workflows/ci.yml",
        ".venv/bin/python",
        ".venv-tools/bin/uv",
        "src/oriserver/__pycache__/app.cpython-311.pyc",
        "src/oriserver/app.pyc",
        ".mypy_cache/3.11/cache.db",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        "oriserver.db",
        "oriserver.db-wal",
        "oriserver.db-shm",
        "src/oriserver/events.db",
        "data/local.sqlite3",
        "bench/results/run.json",
        "tests/conftest.py",
    ],
)
def test_the_build_context_leaves_out_local_clutter(path: str) -> None:
    assert dockerignore_excludes(dockerignore_rules(), path)


def test_the_build_context_keeps_everything_the_images_copy() -> None:
    rules = dockerignore_rules()
    needed: list[Path] = []
    for dockerfile in DOCKERFILES:
        for stage in dockerfile_stages(ROOT / dockerfile):
            for source in copy_sources(stage):
                origin = ROOT / source
                assert origin.exists(), f"{dockerfile} copies missing {source}"
                needed += [origin] if origin.is_file() else list(origin.rglob("*"))
    assert len(needed) > 10
    for path in needed:
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and "__pycache__" not in relative:
            assert not dockerignore_excludes(rules, relative), relative


def test_the_dockerignore_matcher_follows_docker_semantics() -> None:
    rules = ["*", "!src/", "**/__pycache__", "*.db"]
    assert dockerignore_excludes(rules, "notes.txt")
    assert not dockerignore_excludes(rules, "src/a/b.py")
    assert dockerignore_excludes(rules, "src/a/__pycache__/b.pyc")
    assert not dockerignore_excludes(["*.db"], "src/deep.db"), "a bare * stays in one folder"
    assert dockerignore_excludes(["**/*.db"], "src/deep.db")
