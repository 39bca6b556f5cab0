"""Every YAML file of the delivery artefacts passes yamllint in strict mode."""

from __future__ import annotations

from pathlib import Path

from tests.delivery.tools import ROOT, explain, run_tool

CONFIG = ROOT / ".yamllint.yaml"


def delivery_yaml() -> list[Path]:
    files = [CONFIG, *(ROOT / name for name in ("docker-compose.yml", "docker-compose.dev.yml"))]
    for folder in (ROOT / "deploy", ROOT / ".github"):
        files += sorted(p for p in folder.rglob("*") if p.suffix in {".yaml", ".yml"})
    return files


def test_every_delivery_yaml_file_passes_yamllint_strictly() -> None:
    files = delivery_yaml()
    assert len(files) >= 25
    result = run_tool(
        "yamllint", "--strict", "--format", "parsable", "-c", str(CONFIG), *map(str, files)
    )
    assert result.returncode == 0, explain(result)


def test_yamllint_fails_on_a_duplicate_key_and_bad_indentation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nb:\n   - c\n")
    result = run_tool("yamllint", "--strict", "--format", "parsable", "-c", str(CONFIG), str(bad))
    assert result.returncode != 0, explain(result)
    assert "key-duplicates" in result.stdout
    assert "indentation" in result.stdout
