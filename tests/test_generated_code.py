"""The committed gRPC modules are exactly what proto/ generates."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_generated_code_matches_the_protos(tmp_path: Path) -> None:
    gen = _generator()
    gen.generate(tmp_path / "fresh")
    assert gen.trees_equal(tmp_path / "fresh", ROOT / "src" / "oriserver" / "_generated") == []


def test_the_drift_check_notices_a_changed_proto(tmp_path: Path) -> None:
    gen = _generator()
    protos = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", protos)
    legacy = protos / "mathhelper.proto"
    legacy.write_text(
        legacy.read_text().replace("int64 base = 1;", "int64 base = 1;\n  int64 extra = 2;")
    )
    gen.generate(tmp_path / "changed", protos)
    diff = gen.trees_equal(tmp_path / "changed", ROOT / "src" / "oriserver" / "_generated")
    assert "mathhelper_pb2.py" in diff
