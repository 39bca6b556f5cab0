"""Every kubectl command the README, the docs and the kustomization comments give names
namespaces, objects, containers, ports and paths that the rendered overlays really have.

Rendered with `kubectl kustomize` (every overlay under deploy/k8s/overlays); commands are
read by tests/delivery/doc_commands.py. An object a command creates (a Secret, an exposed
Service) counts for the commands after it in the same file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.delivery.doc_commands import (
    KINDS,
    Kubectl,
    markdown_commands,
    yaml_comment_commands,
)
from tests.delivery.tools import OVERLAY_DIR, ROOT, labels_match, render_overlay

MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KUSTOMIZATIONS = sorted((ROOT / "deploy" / "k8s").rglob("kustomization.yaml"))
Key = tuple[str, str, str]  # namespace, kind, name


@dataclass
class Cluster:
    """What applying every overlay would create."""

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    namespace_of_overlay: dict[str, str] = field(default_factory=dict)
    secrets_used: set[tuple[str, str]] = field(default_factory=set)

    def add(self, overlay: Path, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            meta = doc["metadata"]
            if doc["kind"] == "Namespace":
                self.namespace_of_overlay[str(overlay.relative_to(ROOT))] = meta["name"]
                self.objects["", "Namespace", meta["name"]] = doc
                continue
            namespace = meta["namespace"]
            self.objects[namespace, doc["kind"], meta["name"]] = doc
            if doc["kind"] == "Service" and doc["spec"].get("selector"):
                self.objects[namespace, "Endpoints", meta["name"]] = doc
            self.secrets_used |= {(namespace, name) for name in _secret_names(doc)}

    @property
    def namespaces(self) -> set[str]:
        return {name for namespace, kind, name in self.objects if kind == "Namespace"}

    def pod_labels(self, namespace: str) -> Iterator[dict[str, str]]:
        for (where, _, _), doc in self.objects.items():
            template = doc.get("spec", {}).get("template", {})
            if where == namespace and "labels" in template.get("metadata", {}):
                yield template["metadata"]["labels"]


def _secret_names(doc: dict[str, Any]) -> Iterator[str]:
    """Secrets an object refers to: env, volumes, an Ingress's TLS."""
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    for item in pod.get("initContainers", []) + pod.get("containers", []):
        for entry in item.get("env", []):
            if ref := entry.get("valueFrom", {}).get("secretKeyRef"):
                yield ref["name"]
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            yield volume["secret"]["secretName"]
    for tls in doc.get("spec", {}).get("tls", []) if doc["kind"] == "Ingress" else []:
        yield tls["secretName"]
    if doc["kind"] == "ObjectStore":  # the Barman Cloud plugin's bucket credentials
        for ref in doc["spec"]["configuration"].get("s3Credentials", {}).values():
            yield ref["name"]


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    result = Cluster()
    for overlay in sorted(path for path in OVERLAY_DIR.iterdir() if path.is_dir()):
        result.add(overlay, render_overlay(overlay))
    return result


def _commands(path: Path) -> list[Kubectl]:
    if path.suffix == ".md":
        return markdown_commands(path, ROOT)
    return yaml_comment_commands(path, ROOT)


def _paths(command: Kubectl) -> list[str]:
    kustomization = command.options.get("-k") or (
        command.positional[0] if command.verb == "kustomize" and command.positional else None
    )
    found = []
    if kustomization and not (ROOT / kustomization / "kustomization.yaml").is_file():
        found.append(f"{kustomization} is not a kustomization")
    if (file := command.options.get("-f")) and not (ROOT / file).is_file():
        found.append(f"{file} does not exist")
    return found


def _ports(doc: dict[str, Any]) -> set[str]:
    if doc["kind"] == "Service":
        return {str(port["port"]) for port in doc["spec"]["ports"]}
    pod = doc["spec"]["template"]["spec"]
    return {str(port["containerPort"]) for c in pod["containers"] for port in c.get("ports", [])}


def _details(command: Kubectl, cluster: Cluster, ns: str) -> list[str]:
    """The container of `set image`, the port of `port-forward`, the selector of `-l`."""
    found = []
    refs = [(ns, KINDS.get(ref.kind, ""), ref.name) for ref in command.references]
    named = [cluster.objects[key] for key in refs if key in cluster.objects]
    if command.verb == "set" and named:
        pod = named[0]["spec"]["template"]["spec"]
        names = {c["name"] for c in pod["containers"]}
        for arg in command.positional[2:]:
            if arg.partition("=")[0] not in names:
                found.append(f"no container {arg.partition('=')[0]} (there are {sorted(names)})")
    if command.verb == "port-forward" and named:
        for arg in command.positional[1:]:
            if arg.rpartition(":")[2] not in _ports(named[0]):
                found.append(f"{named[0]['metadata']['name']} has no port {arg}")
    if selector := command.options.get("-l"):
        wanted = dict(pair.split("=", 1) for pair in selector.split(","))
        if not any(labels_match(wanted, labels) for labels in cluster.pod_labels(ns)):
            found.append(f"no pods labelled {selector} in {ns}")
    return found


def problems(command: Kubectl, cluster: Cluster, created: set[Key]) -> list[str]:
    """What in the command does not exist; records what it creates in `created`."""
    found = _paths(command)
    ns = command.namespace
    if ns is not None and ns not in cluster.namespaces:
        found.append(f"no namespace {ns} (the overlays have {sorted(cluster.namespaces)})")
        return found
    creates = command.verb == "create" and command.positional[:1] == ["secret"]
    if (command.references or creates) and ns is None:
        return [*found, "no -n: kubectl would look in the default namespace"]
    for ref in command.references:
        kind = KINDS.get(ref.kind)
        if kind is None:
            found.append(f"{ref.kind}/{ref.name}: not a kind kubectl knows")
        elif (ns, kind, ref.name) not in {*cluster.objects, *created}:
            found.append(f"no {kind} {ref.name} in namespace {ns}")
    if ns is not None and creates:
        name = command.positional[2]
        if (ns, name) not in cluster.secrets_used:
            found.append(f"nothing in {ns} uses a Secret named {name}")
        created.add((ns, "Secret", name))
    if ns is not None and command.verb == "expose" and "--name" in command.options:
        created.add((ns, "Service", command.options["--name"]))
    return found + (_details(command, cluster, ns) if ns is not None else [])


def file_problems(commands: list[Kubectl], cluster: Cluster) -> list[str]:
    """problems() of each command of one file, and namespaces that differ from the block's."""
    created: set[Key] = set()
    found = []
    applied: dict[int, str] = {}  # code block -> the namespace of the overlay it applies
    for command in commands:
        found += [f"{command.text}: {problem}" for problem in problems(command, cluster, created)]
        overlay = command.options.get("-k", "").rstrip("/")
        if command.verb == "apply" and overlay in cluster.namespace_of_overlay:
            applied.setdefault(command.block, cluster.namespace_of_overlay[overlay])
        expected = applied.get(command.block)
        if command.namespace and expected and command.namespace != expected:
            found.append(f"{command.text}: the block applies an overlay in {expected}")
    return found


SOURCES = MARKDOWN + KUSTOMIZATIONS


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_kubectl_command_names_what_the_overlays_render(path: Path, cluster: Cluster) -> None:
    assert file_problems(_commands(path), cluster) == []


def test_the_commands_are_found_where_the_readme_and_the_docs_give_them() -> None:
    readme = _commands(ROOT / "README.md")
    verbs = [command.verb for command in readme]
    assert "apply" in verbs
    assert "wait" in verbs, "the README waits for the migration Job"
    everywhere = [command for path in SOURCES for command in _commands(path)]
    mentioned = sum(path.read_text().count("kubectl -n ") for path in SOURCES)
    assert len([c for c in everywhere if c.namespace]) >= mentioned
    assert len(everywhere) >= 40


@pytest.mark.parametrize(
    ("block", "complaint"),
    [
        (
            "kubectl apply -k deploy/k8s/overlays/dev\n"
            "kubectl -n oriserver wait --for=condition=complete job/oriserver-migrate",
            "no Job oriserver-migrate in namespace oriserver",
        ),
        (
            "kubectl apply -k deploy/k8s/overlays/dev\n"
            "kubectl -n oriserver wait --for=condition=complete job/oriserver-db-upgrade",
            "the block applies an overlay in oriserver-dev",
        ),
        ("kubectl -n oriserver-staging get pods", "no namespace oriserver-staging"),
        ("kubectl rollout status deployment/oriserver", "no -n"),
        ("kubectl -n oriserver rollout status deploymnet/oriserver", "not a kind"),
        ("kubectl -n oriserver set image deployment/oriserver app=x:1", "no container app"),
        ("kubectl -n oriserver port-forward service/oriserver 9000:9000", "has no port"),
        ("kubectl -n oriserver get pods -l app.kubernetes.io/name=nginx", "no pods labelled"),
        ("kubectl -n oriserver create secret generic oriserver-pw", "nothing in oriserver uses"),
        ("kubectl apply -k deploy/k8s/overlays/staging", "is not a kustomization"),
    ],
)
def test_the_check_finds_a_wrong_name_namespace_kind_container_port_label_or_path(
    block: str, complaint: str, cluster: Cluster, tmp_path: Path
) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"```sh\n{block}\n```\n")
    found = file_problems(markdown_commands(page, tmp_path), cluster)
    assert any(complaint in problem for problem in found), found
