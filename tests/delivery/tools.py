"""Finding and running the offline validators, and reading the files they check."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.delivery.crds import crd_problems, is_crd_kind

ROOT = Path(__file__).resolve().parents[2]
# Not resolved: .venv/bin/python is a symlink to the system interpreter.
VENV_BIN = Path(sys.executable).parent

OVERLAYS = ("dev", "prod")
OVERLAY_DIR = ROOT / "deploy" / "k8s" / "overlays"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.dev.yml")
DOCKERFILES = ("Dockerfile", "Dockerfile.dev")
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def find_tool(name: str) -> str:
    """The validator's path, from the project's virtualenv first, else PATH; fails if absent."""
    candidate = VENV_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"the validator `{name}` is missing: neither {candidate} nor PATH has it. "
            "It is pinned in requirements/dev.txt; scripts/test installs it.",
            pytrace=False,
        )
    return found


def run_tool(
    name: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """Run a validator and capture its output; the caller judges the result."""
    return subprocess.run(
        [find_tool(name), *args],
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    """The command and everything it printed, for assertion messages."""
    command = shlex.join(str(part) for part in result.args)
    return f"$ {command}\n(exit {result.returncode})\n{result.stdout}{result.stderr}"


def clean_environment(**overrides: str) -> dict[str, str]:
    """This process's environment minus ORI_*, ORISERVER_*, COMPOSE_*, DOCKER_*, plus overrides."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ORI_", "ORISERVER_", "COMPOSE_", "DOCKER_"))
    }
    env.update(overrides)
    return env


# --- Kubernetes -----------------------------------------------------------------------


def render_overlay(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` the directory and parse the documents."""
    result = run_tool("kubectl", "kustomize", str(path))
    assert result.returncode == 0, explain(result)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def schema_problems(manifest: Path, kubernetes_version: str | None) -> list[str]:
    """Problems `kubernetes-validate --strict` finds, counting a resource it could not check;
    the operators' kinds with a vendored CRD schema (tests/delivery/crds.py) checked by that.

    kubernetes-validate only warns (and exits 0) for a kind it has no schema
    for, so a typo in `kind:` would slip through; every document must be
    reported as passed instead.
    """
    every = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]
    custom = [doc for doc in every if is_crd_kind(doc)]
    documents = [doc for doc in every if not is_crd_kind(doc)]
    if custom:
        manifest = manifest.with_name(f"{manifest.stem}-built-in.yaml")
        manifest.write_text(yaml.safe_dump_all(documents))
    version = ["--kubernetes-version", kubernetes_version] if kubernetes_version else []
    result = run_tool("kubernetes-validate", "--strict", *version, str(manifest))
    lines = (result.stdout + result.stderr).splitlines()
    passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
    problems = [line for line in lines if not line.startswith("INFO")]
    if result.returncode != 0 and not problems:
        problems.append(explain(result))
    if len(passed) != len(documents):
        problems.append(f"{len(passed)} of {len(documents)} resources were validated")
    return problems + crd_problems(custom)


def rendered_schema_problems(
    docs: Sequence[dict[str, Any]], folder: Path, kubernetes_version: str | None
) -> list[str]:
    """schema_problems() for documents already rendered (written to folder first)."""
    manifest = folder / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    return schema_problems(manifest, kubernetes_version)


def by_kind(docs: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Sequence[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in by_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} named {name}, found {len(matches)}"
    return matches[0]


def container(pod_spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    matches = [c for c in pod_spec["containers"] if c["name"] == name]
    assert len(matches) == 1, f"expected one container named {name}"
    return matches[0]


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def effective_env(docs: Sequence[dict[str, Any]], spec: Mapping[str, Any]) -> dict[str, str]:
    """A container's literal environment: its ConfigMaps (envFrom), then its `env` values;
    a value from the CloudNativePG operator's app Secret as the operator would write it."""
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        config_map = one(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update(config_map["data"])
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif (ref := item.get("valueFrom", {}).get("secretKeyRef")) and ref["key"] == "uri":
            env[item["name"]] = cnpg_app_uri(docs, ref["name"])
    return env


def cnpg_app_uri(docs: Sequence[dict[str, Any]], secret: str) -> str:
    """The key `uri` of the Secret <cluster>-app that CloudNativePG generates for a
    Cluster bootstrapped with a database and owner: the owner, a generated password
    (a stand-in here), the cluster's read-write Service in its namespace, the database
    (pkg/specs/secrets.go of the operator)."""
    assert secret.endswith("-app"), f"{secret} is not an operator's app Secret"
    cluster = one(docs, "Cluster", secret.removesuffix("-app"))
    bootstrap = cluster["spec"]["bootstrap"]
    (method,) = bootstrap.values()
    host = f"{cluster['metadata']['name']}-rw.{cluster['metadata']['namespace']}"
    return f"postgresql://{method['owner']}:generated-password@{host}:5432/{method['database']}"


@functools.cache
def _stand_in_tokens_file() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tokens-")) / "tokens"
    path.write_text("a-token-of-the-right-shape-0123\n")
    path.chmod(0o440)  # the mode the Secret volume gives it
    return path


def on_this_machine(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with files that live on a pod's Secret volumes replaced by local stand-ins
    (one well-formed token for the events-API tokens file), so load_settings can parse it."""
    local = dict(env)
    if "ORI_EVENTS_API_TOKENS_FILE" in local:
        local["ORI_EVENTS_API_TOKENS_FILE"] = str(_stand_in_tokens_file())
    return local


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("500m", "2") in cores."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


# --- Dockerfiles ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_stages(path: Path) -> list[list[Instruction]]:
    """Instructions grouped by build stage, continuation lines joined, comments dropped.

    The global ARGs before the first FROM are no stage's; dockerfile_global_args() has them.
    """
    return _dockerfile_sections(path)[1:]


def dockerfile_global_args(path: Path) -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults ("" without one)."""
    declared: dict[str, str] = {}
    for instruction in _dockerfile_sections(path)[0]:
        assert instruction.keyword == "ARG", f"{path.name}: {instruction.keyword} before FROM"
        name, _, default = instruction.arguments.partition("=")
        declared[name] = default.strip('"')
    return declared


def base_image(stage: Sequence[Instruction], global_args: Mapping[str, str]) -> str:
    """The image a stage starts FROM, with ${NAME} of the global ARGs at their defaults."""
    image = stage[0].arguments.split()[0]
    return re.sub(r"\$\{?(\w+)\}?", lambda m: global_args[m.group(1)], image)


def _dockerfile_sections(path: Path) -> list[list[Instruction]]:
    """The instructions before the first FROM, then one list per stage."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    sections: list[list[Instruction]] = [[]]
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), " ".join(arguments.split()))
        if instruction.keyword == "FROM":
            sections.append([])
        sections[-1].append(instruction)
    assert len(sections) > 1, f"{path.name}: no FROM"
    return sections


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form ENTRYPOINT/CMD."""
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    return [str(part) for part in value]


# --- .dockerignore --------------------------------------------------------------------


def _pattern_regex(pattern: str) -> str:
    """Docker's pattern syntax: `**` spans directories, `*` and `?` stay within one."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def dockerignore_excludes(rules: Sequence[str], relative_path: str) -> bool:
    """Whether Docker leaves the path out of the build context (last matching rule wins).

    A rule also applies to everything below a directory it matches.
    """
    parts = relative_path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule[1:] if negated else rule
        pattern = os.path.normpath(pattern.strip().lstrip("/"))
        regex = re.compile(_pattern_regex(pattern) + r"\Z")
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def dockerignore_rules() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


# --- compose --------------------------------------------------------------------------


def compose_model(file: str, **env: str) -> dict[str, Any]:
    """The model `docker-compose config` resolves, with only the given variables set."""
    result = run_tool(
        "docker-compose", "-f", file, "config", "--format", "json", env=clean_environment(**env)
    )
    assert result.returncode == 0, explain(result)
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def seconds(duration: str) -> float:
    """A compose duration such as "45s", "1m30s" or "1m"."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, f"not a duration: {duration}"
    return sum(float(number) * units[unit] for number, unit in parts)
