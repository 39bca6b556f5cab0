"""The README's quick start as a new user meets it: a fresh clone, no .venv, a clean environment.

Each command of the quick-start block is read from README.md and run, exactly as written, in its
own fresh clone of the committed HEAD (the README says each one creates .venv on first use).
The failure tests run the working tree's scripts in a copy, to show that a failing environment
creation ends in one line and an exit code, not in pip's traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.servers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Creating .venv from the hash-pinned locks takes tens of seconds with a warm pip cache.
ENVIRONMENT_TIMEOUT = 500

# What a stranger's shell has, plus what this machine's pip needs to reach its index.
KEPT_VARIABLES = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "PYTHON"}
KEPT_PREFIXES = ("PIP_", "SSL_", "PYENV_", "XDG_")
KEPT_CERTIFICATE_AND_PROXY_VARIABLES = {
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "http_proxy", "https_proxy", "no_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
}  # fmt: skip


def quick_start_commands() -> list[str]:
    """The commands of the README's quick-start block, comments dropped."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's quick start has no ```sh block"
    words = (shlex.split(line, comments=True) for line in block.group(1).splitlines())
    return [shlex.join(command) for command in words if command]


def _is_virtual_environment_bin(directory: str) -> bool:
    return (Path(directory).parent / "pyvenv.cfg").is_file()


def clean_environment() -> dict[str, str]:
    """This process's environment without ORI_*, VIRTUAL_ENV, PYTHONPATH or any venv on PATH."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name in KEPT_VARIABLES
        or name in KEPT_CERTIFICATE_AND_PROXY_VARIABLES
        or name.startswith(KEPT_PREFIXES)
    }
    path = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(d for d in path if d and not _is_virtual_environment_bin(d))
    return env


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def fresh_clone(destination: Path) -> Path:
    """A clone of the repository at the HEAD these tests run from."""
    head = _git("-C", str(ROOT), "rev-parse", "HEAD")
    _git("clone", "--quiet", "--no-local", str(ROOT), str(destination))
    _git("-C", str(destination), "-c", "advice.detachedHead=false", "checkout", "-q", head)
    assert not (destination / ".venv").exists()
    return destination


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ends the command and whatever it started (pip, the server), if still running."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def _ori_health(clone: Path, env: dict[str, str]) -> str:
    ori = clone / ".venv" / "bin" / "ori"
    if not ori.exists():
        return ""
    result = subprocess.run(
        [str(ori), "health"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout.strip()


def run_serve(clone: Path, command: str, env: dict[str, str]) -> None:
    """The server command runs until `ori health` says SERVING, then SIGTERM ends it with 0."""
    env = {**env, "ORI_PORT": str(free_port()), "ORI_METRICS_PORT": "0"}
    log_path = clone.parent / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            shlex.split(command), cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + ENVIRONMENT_TIMEOUT
        while _ori_health(clone, env) != "SERVING":
            assert process.poll() is None, f"{command} ended early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"never SERVING:\n{log_path.read_text()}"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_path.read_text()
    finally:
        _stop(process)
    assert "Traceback" not in log_path.read_text()


def run_test(clone: Path, command: str, env: dict[str, str]) -> None:
    """The quality gate creates its environment and runs every step; pytest only collects,
    since the whole suite would run this test again."""
    result = subprocess.run(
        [*shlex.split(command), "--collect-only", "-q"], cwd=clone, env=env,
        capture_output=True, text=True, timeout=ENVIRONMENT_TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^\d+(/\d+)? tests collected", result.stdout, re.MULTILINE), result.stdout


RUNNERS: dict[str, Callable[[Path, str, dict[str, str]], None]] = {
    "scripts/serve": run_serve,
    "scripts/test": run_test,
}


def _installs(clone: Path, command: str, env: dict[str, str]) -> list[str]:
    """The lines a second run of the command's environment step prints about installing."""
    script = (clone / command).read_text()
    step = re.search(r"^ensure_venv .*$", script, re.MULTILINE)
    assert step is not None, f"{command} does not call ensure_venv"
    result = subprocess.run(
        ["bash", "-c", f"source scripts/venv.sh && {step.group(0)}"], cwd=clone, env=env,
        capture_output=True, text=True, timeout=ENVIRONMENT_TIMEOUT, check=True,
    )  # fmt: skip
    return result.stderr.splitlines()


@pytest.mark.timeout(2 * ENVIRONMENT_TIMEOUT)
@pytest.mark.parametrize("command", quick_start_commands())
def test_each_quick_start_command_works_on_a_fresh_clone(tmp_path: Path, command: str) -> None:
    runner = RUNNERS.get(command)
    assert runner is not None, f"the README's quick start runs {command!r}; teach this test it"
    clone = fresh_clone(tmp_path / "oriserver")
    env = clean_environment()
    runner(clone, command, env)
    assert _installs(clone, command, env) == [], "an unchanged checkout must not run pip again"


def working_tree_copy(destination: Path) -> Path:
    """The files scripts/serve needs to build .venv, from the working tree under test."""
    for directory in ("scripts", "requirements"):
        shutil.copytree(ROOT / directory, destination / directory)
    shutil.copy(ROOT / "pyproject.toml", destination)
    return destination


def run_failing_serve(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(root / "scripts" / "serve")], cwd=root, env={**clean_environment(), **env},
        capture_output=True, text=True, timeout=ENVIRONMENT_TIMEOUT, check=False,
    )  # fmt: skip


def the_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's only error line, after at most the progress lines; no pip output."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "ERROR" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]
    return errors[0]


def test_a_python_that_is_not_there_is_one_line_and_a_usage_error(tmp_path: Path) -> None:
    root = working_tree_copy(tmp_path / "oriserver")
    result = run_failing_serve(root, PYTHON=str(tmp_path / "no-such-python3"))
    assert result.returncode == 2
    line = the_one_error_line(result)
    assert "PYTHON=" in line
    assert "no-such-python3" in line
    assert not (root / ".venv").exists()


def test_no_python_on_path_is_one_line_and_a_usage_error(tmp_path: Path) -> None:
    root = working_tree_copy(tmp_path / "oriserver")
    tools = tmp_path / "tools"  # what the scripts need besides Python
    tools.mkdir()
    for tool in ("bash", "dirname", "cat", "sha256sum", "cut", "rm"):
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    env = {k: v for k, v in clean_environment().items() if k != "PYTHON"}
    result = subprocess.run(
        [str(root / "scripts" / "serve")], cwd=root, env={**env, "PATH": str(tools)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Python 3.11 or newer" in the_one_error_line(result)


def test_a_lock_pip_cannot_install_is_one_line_naming_the_log_and_a_runtime_error(
    tmp_path: Path,
) -> None:
    root = working_tree_copy(tmp_path / "oriserver")
    with (root / "requirements" / "runtime.txt").open("a") as lock:
        lock.write("this-is-not-a-requirement!!\n")
    result = run_failing_serve(root)
    assert result.returncode == 1
    line = the_one_error_line(result)
    assert "requirements/runtime.txt" in line
    log = root / ".venv" / "pip.log"
    assert str(log) in line
    assert "this-is-not-a-requirement!!" in log.read_text()
