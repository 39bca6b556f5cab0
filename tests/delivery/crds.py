"""Validating custom resources against the CRD schemas vendored in deploy/k8s/schemas.

kubernetes-validate knows only the built-in kinds; the operators' kinds (the
Prometheus Operator's, CloudNativePG's and its Barman Cloud plugin's) are
checked here with jsonschema, as strictly as `kubectl apply` checks them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "schemas"

# The vendored openAPIV3Schema of each custom kind the manifests use.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_v1_podmonitor.yaml",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io_v1_cluster.yaml",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): "postgresql.cnpg.io_v1_scheduledbackup.yaml",
    ("barmancloud.cnpg.io/v1", "ObjectStore"): "barmancloud.cnpg.io_v1_objectstore.yaml",
}

# What the rendered manifests may carry in metadata (the CRDs leave it open;
# the API server checks it as ObjectMeta).
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string", "minLength": 1},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _strict(node: dict[str, Any]) -> dict[str, Any]:
    """The schema as `kubectl apply` enforces it (strict field validation): an object
    with declared properties rejects any other field. Also adapts Go's regexp syntax
    `^(?i)...` (a flag after the anchor) to Python's `(?i)^...`."""
    node = dict(node)
    if "properties" in node:
        node["properties"] = {key: _strict(value) for key, value in node["properties"].items()}
        if "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            node["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _strict(node["additionalProperties"])
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"])
    for keyword in ("anyOf", "allOf", "oneOf"):
        if keyword in node:
            node[keyword] = [_strict(each) for each in node[keyword]]
    if isinstance(node.get("pattern"), str) and node["pattern"].startswith("^(?i)"):
        node["pattern"] = "(?i)^" + node["pattern"][len("^(?i)") :]
    return node


@cache
def crd_validator(file: str) -> jsonschema.Draft7Validator:
    schema = _strict(yaml.safe_load((SCHEMAS / file).read_text()))
    schema["properties"]["metadata"] = OBJECT_META
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def crd_problems(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each document against the vendored schema of its kind; a kind without one fails."""
    problems = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        file = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
        if file is None:
            problems.append(f"{where}: no vendored schema for {doc.get('apiVersion')}")
            continue
        for error in crd_validator(file).iter_errors(doc):
            path = ".".join(str(part) for part in error.absolute_path)
            problems.append(f"{where}: {path}: {error.message}")
    return problems


def is_crd_kind(doc: Mapping[str, Any]) -> bool:
    return (doc.get("apiVersion"), doc.get("kind")) in CRD_SCHEMAS
