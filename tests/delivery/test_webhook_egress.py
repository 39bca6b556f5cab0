"""deploy/k8s/components/webhook-egress: the server pods may reach an HTTPS webhook.

Rendered on top of the prod overlay by `kubectl kustomize` (from a kustomization written
for the test), validated with `kubernetes-validate --strict`, then checked for what the
policy selects and allows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.delivery.test_kubernetes import KUBERNETES_VERSIONS
from tests.delivery.tools import (
    OVERLAY_DIR,
    ROOT,
    by_kind,
    labels_match,
    one,
    render_overlay,
    rendered_schema_problems,
)

Docs = list[dict[str, Any]]
COMPONENT = ROOT / "deploy" / "k8s" / "components" / "webhook-egress"


@pytest.fixture(scope="module")
def with_webhook(tmp_path_factory: pytest.TempPathFactory) -> Docs:
    folder = tmp_path_factory.mktemp("webhook-overlay")
    # kustomize takes only relative paths to other kustomizations.
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "oriserver",
        "resources": [os.path.relpath(OVERLAY_DIR / "prod", folder)],
        "components": [os.path.relpath(COMPONENT, folder)],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render_overlay(folder)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "latest")
def test_prod_with_the_component_passes_strict_schema_validation(
    with_webhook: Docs, tmp_path: Path, version: str | None
) -> None:
    assert rendered_schema_problems(with_webhook, tmp_path, version) == []


def test_it_adds_one_policy_and_changes_nothing_else(
    with_webhook: Docs, rendered: dict[str, Docs]
) -> None:
    added = [doc for doc in with_webhook if doc not in rendered["prod"]]
    assert [(d["kind"], d["metadata"]["name"]) for d in added] == [
        ("NetworkPolicy", "oriserver-webhook")
    ]
    assert [doc for doc in with_webhook if doc not in added] == rendered["prod"]


def test_the_server_pods_and_only_they_may_reach_port_443(with_webhook: Docs) -> None:
    policy = one(with_webhook, "NetworkPolicy", "oriserver-webhook")
    assert policy["metadata"]["namespace"] == "oriserver"
    assert policy["spec"]["policyTypes"] == ["Egress"]  # ingress stays as the base allows
    rules = policy["spec"]["egress"]
    assert [(p["port"], p["protocol"]) for rule in rules for p in rule["ports"]] == [(443, "TCP")]
    assert all("to" not in rule for rule in rules)  # the webhook's address is not known here
    selector = policy["spec"]["podSelector"]["matchLabels"]
    server = one(with_webhook, "Deployment", "oriserver")["spec"]["template"]["metadata"]
    assert labels_match(selector, server["labels"])
    for job in by_kind(with_webhook, "Job"):
        assert not labels_match(selector, job["spec"]["template"]["metadata"]["labels"])
