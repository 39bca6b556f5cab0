"""The house rules that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "oriserver"
OWN_MODULES = [p for p in SRC.rglob("*.py") if "_generated" not in p.parts]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_domain_imports_only_the_standard_library_and_itself() -> None:
    for path in (SRC / "domain").rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            allowed = top in sys.stdlib_module_names or name.startswith("oriserver.domain")
            assert allowed, f"{path.relative_to(SRC)} imports {name}"


# Which top-level packages each tree must not import: the server knows nothing of its tooling,
# the shared harness nothing of its two users, and bench and tests not each other (tests reach
# bench only where they test bench itself).
FORBIDDEN = {
    "src/oriserver": {"bench", "harness", "tests"},
    "harness": {"bench", "tests"},
    "bench": {"tests"},
    "tests": {"bench"},
}
BENCH_TESTS = {"tests/test_bench_smoke.py", "tests/integration/test_multiwriter_bench.py"}


def wrong_way_imports(root: Path) -> list[str]:
    """Every import under root that runs against FORBIDDEN, as "file imports module"."""
    found = []
    for tree, forbidden in FORBIDDEN.items():
        for path in sorted((root / tree).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative in BENCH_TESTS or "_generated" in path.parts:
                continue
            found += [
                f"{relative} imports {name}"
                for name in sorted(_imports(path))
                if name.split(".")[0] in forbidden
            ]
    return found


def test_imports_flow_one_way_between_server_harness_bench_and_tests() -> None:
    assert wrong_way_imports(ROOT) == []


def test_the_layering_check_sees_an_import_that_runs_the_wrong_way(tmp_path: Path) -> None:
    for tree, module in [("harness", "tests.support.servers"), ("bench", "tests"),
                         ("src/oriserver", "harness.load"), ("tests", "bench.runner")]:  # fmt: skip
        (tmp_path / tree).mkdir(parents=True, exist_ok=True)
        (tmp_path / tree / "wrong.py").write_text(f"def f():\n    import {module}\n")
    (tmp_path / "tests" / "fine.py").write_text("from harness import servers\nimport oriserver\n")
    assert wrong_way_imports(tmp_path) == [
        "src/oriserver/wrong.py imports harness.load",
        "harness/wrong.py imports tests.support.servers",
        "bench/wrong.py imports tests",
        "tests/wrong.py imports bench.runner",
    ]


def test_only_entrypoints_read_the_environment() -> None:
    readers = set()
    for path in OWN_MODULES:
        text = path.read_text()
        if "os.environ" in text or "os.getenv" in text:
            readers.add(path.relative_to(SRC).as_posix())
    assert readers <= {"cli/server_main.py", "cli/client_main.py", "cli/workers.py"}, readers


def test_every_module_says_why_it_exists() -> None:
    for path in OWN_MODULES:
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, f"{path.relative_to(SRC)} has no module docstring"


def test_modules_stay_small() -> None:
    for path in OWN_MODULES:
        lines = len(path.read_text().splitlines())
        assert lines <= 350, f"{path.relative_to(SRC)} has {lines} lines"


def test_importing_every_module_does_no_work() -> None:
    """No threads, sockets, servers or files are created merely by importing."""
    modules = [
        ".".join(p.relative_to(SRC.parent).with_suffix("").parts)
        for p in OWN_MODULES
        # __main__ and host_entry run on import by design; Alembic runs migration scripts itself.
        if p.name not in {"__main__.py", "host_entry.py"} and "migrations" not in p.parts
    ]
    script = f"""
import os, threading, sys
before_fds = set(os.listdir('/proc/self/fd'))
before_threads = threading.active_count()
for name in {sorted(modules)!r}:
    __import__(name)
after_fds = set(os.listdir('/proc/self/fd'))
assert threading.active_count() == before_threads, 'a thread started at import time'
assert after_fds <= before_fds | set(), f'files or sockets opened at import time: {{after_fds - before_fds}}'
print('ok')
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=SRC.parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
