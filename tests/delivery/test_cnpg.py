"""PostgreSQL through CloudNativePG in the prod overlay (deploy/k8s/components/cnpg*).

The operator's objects are rendered by `kubectl kustomize` and validated against the
CRD schemas vendored in deploy/k8s/schemas (tests/delivery/crds.py: unknown fields
fail, as with `kubectl apply`), then checked for what docs/operating.md promises:
three instances on three nodes, a disruption budget, WAL archiving and nightly
backups to the object store, the read-write Service behind ORI_DATABASE_URL, and the
two switches (synchronous replication, restore to a point in time).
"""

from __future__ import annotations

import copy
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from oriserver.cli.server_main import _parser
from oriserver.config import load_settings
from tests.delivery.crds import crd_problems, is_crd_kind
from tests.delivery.tools import (
    OVERLAY_DIR,
    ROOT,
    by_kind,
    container,
    effective_env,
    labels_match,
    on_this_machine,
    one,
    render_overlay,
)

Docs = list[dict[str, Any]]
Rendered = dict[str, Docs]
COMPONENTS = ROOT / "deploy" / "k8s" / "components"
OPERATING = ROOT / "docs" / "operating.md"
CLUSTER = "oriserver-postgres"
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"


def prod_with(folder: Path, *components: str, k8s: Path = ROOT / "deploy" / "k8s") -> Docs:
    """prod plus the given components (after cnpg), from a kustomization written here."""
    # kustomize takes only relative paths to other kustomizations.
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "oriserver",
        "resources": [os.path.relpath(k8s / "overlays" / "prod", folder)],
        "components": [os.path.relpath(k8s / "components" / name, folder) for name in components],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render_overlay(folder)


def cluster(docs: Docs) -> dict[str, Any]:
    return one(docs, "Cluster", CLUSTER)


def test_prod_renders_the_operators_objects_and_they_pass_the_vendored_schemas(
    rendered: Rendered,
) -> None:
    custom = [doc for doc in rendered["prod"] if is_crd_kind(doc)]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in custom) == [
        ("Cluster", CLUSTER),
        ("ObjectStore", "oriserver-backups"),
        ("ScheduledBackup", "oriserver-postgres-nightly"),
    ]
    assert crd_problems(custom) == []
    assert by_kind(rendered["prod"], "StatefulSet") == [], "the hand-written one is gone"
    assert by_kind(rendered["dev"], "Cluster") == [], "dev keeps its single StatefulSet"
    assert len(by_kind(rendered["dev"], "StatefulSet")) == 1


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = changed
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return changed


@pytest.mark.parametrize(
    ("kind", "path", "value", "reported"),
    [
        ("Cluster", "spec.instancess", 3, "'instancess' was unexpected"),
        ("Cluster", "spec.storage.sizee", "1Gi", "'sizee' was unexpected"),
        ("Cluster", "spec.affinity.podAntiAffinityType", {"x": 1}, "is not of type 'string'"),
        ("Cluster", "spec.plugins.0.isWalArchiver", True, "'isWalArchiver' was unexpected"),
        ("Cluster", "metadata.lables", {}, "'lables' was unexpected"),
        ("ScheduledBackup", "spec.method", "barman", "'barman' is not one of"),
        ("ScheduledBackup", "spec.clusterName", CLUSTER, "'clusterName' was unexpected"),
        ("ObjectStore", "spec.configuration.wal.compression", "zip", "'zip' is not one of"),
        ("ObjectStore", "spec.retention", "30d", "'retention' was unexpected"),
    ],
)
def test_the_schema_check_fails_on_an_unknown_field_or_a_bad_value(
    rendered: Rendered, kind: str, path: str, value: Any, reported: str
) -> None:
    (doc,) = by_kind(rendered["prod"], kind)
    assert crd_problems([doc]) == []
    problems = crd_problems([_set(doc, path, value)])
    assert any(reported in problem for problem in problems), problems


def test_the_schema_check_fails_on_a_kind_it_has_no_schema_for(rendered: Rendered) -> None:
    typo = {**cluster(rendered["prod"]), "kind": "Clustr"}
    assert crd_problems([typo]) == [
        f"Clustr/{CLUSTER}: no vendored schema for postgresql.cnpg.io/v1"
    ]


def test_three_instances_on_three_nodes_with_the_operators_disruption_budget(
    rendered: Rendered,
) -> None:
    spec = cluster(rendered["prod"])["spec"]
    assert spec["instances"] == 3
    assert spec["enablePDB"] is True
    affinity = spec["affinity"]
    assert affinity["enablePodAntiAffinity"] is True
    assert affinity["podAntiAffinityType"] == "required"
    assert affinity["topologyKey"] == "kubernetes.io/hostname"
    assert spec["storage"]["size"].endswith("Gi")
    assert set(spec["resources"]) == {"requests", "limits"}
    image = spec["imageName"]
    assert image.rpartition(":")[2] not in {"", "latest"}, image
    assert spec["bootstrap"] == {"initdb": {"database": "oriserver", "owner": "oriserver"}}


def test_wal_is_archived_and_backed_up_nightly_to_the_object_store(rendered: Rendered) -> None:
    docs = rendered["prod"]
    (plugin,) = cluster(docs)["spec"]["plugins"]
    assert plugin["name"] == BARMAN_PLUGIN
    assert plugin["isWALArchiver"] is True
    store = one(docs, "ObjectStore", plugin["parameters"]["barmanObjectName"])
    assert store["spec"]["configuration"]["destinationPath"].startswith("s3://")
    assert store["spec"]["retentionPolicy"]
    credentials = store["spec"]["configuration"]["s3Credentials"]
    assert {ref["name"] for ref in credentials.values()} == {"oriserver-backup-s3"}
    assert by_kind(docs, "Secret") == [], "the bucket's keys are created by hand"
    (backup,) = by_kind(docs, "ScheduledBackup")
    spec = backup["spec"]
    assert spec["cluster"]["name"] == CLUSTER
    assert (spec["method"], spec["pluginConfiguration"]["name"]) == ("plugin", BARMAN_PLUGIN)
    assert len(spec["schedule"].split()) == 6, "the operator's schedule starts with seconds"


def test_oriserver_reads_the_operators_secret_and_connects_to_the_read_write_service(
    rendered: Rendered,
) -> None:
    docs = rendered["prod"]
    deployment = one(docs, "Deployment", "oriserver")["spec"]["template"]["spec"]
    job = one(docs, "Job", "oriserver-db-upgrade")["spec"]["template"]["spec"]
    containers = [*deployment["initContainers"], *deployment["containers"]]
    containers += [*job["initContainers"], *job["containers"]]
    for item in containers:
        (url,) = [e for e in item["env"] if e["name"] == "ORI_DATABASE_URL"]
        ref = url["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (f"{CLUSTER}-app", "uri"), item["name"]
        database = load_settings(on_this_machine(effective_env(docs, item))).events.database
        assert database.dialect == "postgresql"
        assert f"@{CLUSTER}-rw.oriserver:5432/oriserver" in database.url, item["name"]
        assert "generated-password" not in database.redacted()


def test_the_migration_job_first_waits_for_the_database_to_answer(rendered: Rendered) -> None:
    docs = rendered["prod"]
    job = one(docs, "Job", "oriserver-db-upgrade")
    pod = job["spec"]["template"]["spec"]
    (wait,) = pod["initContainers"]
    (migrate,) = pod["containers"]
    assert (
        wait["image"]
        == migrate["image"]
        == container(one(docs, "Deployment", "oriserver")["spec"]["template"]["spec"], "server")[
            "image"
        ]
    )
    assert wait.get("command") is None, "the image's ENTRYPOINT (oriserver) runs"
    args = _parser().parse_args(wait["args"])  # a typo in an option exits 2 here
    assert (args.command, args.db_command, args.reachable) == ("db", "wait", True)
    assert args.timeout < job["spec"]["activeDeadlineSeconds"], "time left to migrate"
    assert wait["envFrom"] == migrate["envFrom"]
    assert effective_env(docs, wait) == effective_env(docs, migrate)


def test_only_oriserver_pods_the_instances_and_the_operator_reach_the_database(
    rendered: Rendered,
) -> None:
    docs = rendered["prod"]
    policy = one(docs, "NetworkPolicy", CLUSTER)
    assert policy["spec"]["podSelector"]["matchLabels"] == {"cnpg.io/cluster": CLUSTER}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    sources = []
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from"), f"a rule without `from` lets every pod in: {rule}"
        assert rule.get("ports"), f"a rule without ports opens every port: {rule}"
        sources += [(peer, {p["port"] for p in rule["ports"]}) for peer in rule["from"]]
    oriserver = [
        template["metadata"]["labels"]
        for kind, name in (("Deployment", "oriserver"), ("Job", "oriserver-db-upgrade"))
        for template in [one(docs, kind, name)["spec"]["template"]]
    ]
    app_rules = [
        ports
        for peer, ports in sources
        if "namespaceSelector" not in peer
        and all(labels_match(peer["podSelector"]["matchLabels"], labels) for labels in oriserver)
    ]
    assert app_rules == [{5432}]
    operator = [peer for peer, _ in sources if "namespaceSelector" in peer]
    assert [p["podSelector"]["matchLabels"] for p in operator] == [
        {"app.kubernetes.io/name": "cloudnative-pg"}
    ]
    # Every peer is one of those three: oriserver, the cluster's own instances, the operator.
    assert len(sources) == 3


def test_the_synchronous_switch_waits_for_any_one_standby(tmp_path: Path) -> None:
    docs = prod_with(tmp_path, "cnpg-synchronous")
    custom = [doc for doc in docs if is_crd_kind(doc)]
    assert crd_problems(custom) == []
    synchronous = cluster(docs)["spec"]["postgresql"]["synchronous"]
    assert (synchronous["method"], synchronous["number"]) == ("any", 1)
    assert synchronous["number"] < cluster(docs)["spec"]["instances"] - 1, "one standby may go"
    assert synchronous["dataDurability"] in {"required", "preferred"}


def test_the_restore_switch_recovers_from_the_object_store_to_a_time_the_runbook_sets(
    tmp_path: Path,
) -> None:
    docs = prod_with(tmp_path, "cnpg-restore")
    assert crd_problems([doc for doc in docs if is_crd_kind(doc)]) == []
    spec = cluster(docs)["spec"]
    recovery = spec["bootstrap"]["recovery"]
    assert set(spec["bootstrap"]) == {"recovery"}, "initdb is gone"
    (source,) = spec["externalClusters"]
    assert recovery["source"] == source["name"]
    assert source["plugin"]["name"] == BARMAN_PLUGIN
    (plugin,) = spec["plugins"]
    assert (
        source["plugin"]["parameters"]["barmanObjectName"]
        == (plugin["parameters"]["barmanObjectName"])
    )
    assert source["plugin"]["parameters"]["serverName"] == CLUSTER, "the backups of prod"
    assert plugin["parameters"]["serverName"] != CLUSTER, "never into the old archive"
    assert (recovery["database"], recovery["owner"]) == ("oriserver", "oriserver")
    placeholder = recovery["recoveryTarget"]["targetTime"]
    assert placeholder.startswith("SET-ME"), "no real time is committed"
    runbook = OPERATING.read_text()
    assert "targetTime" in runbook, "docs/operating.md tells how to set it"
    assert "components/cnpg-restore" in runbook


def test_the_restore_target_takes_an_rfc_3339_time_as_the_runbook_sets_it(
    tmp_path: Path,
) -> None:
    # The runbook's step: replace the placeholder in a copy of the component.
    k8s = tmp_path / "k8s"
    shutil.copytree(ROOT / "deploy" / "k8s", k8s)
    restore = k8s / "components" / "cnpg-restore" / "kustomization.yaml"
    text = restore.read_text()
    placeholder = next(line for line in text.splitlines() if "targetTime:" in line)
    restore.write_text(text.replace(placeholder, '            targetTime: "2026-12-01T09:59:00Z"'))
    folder = tmp_path / "overlay"
    folder.mkdir()
    docs = prod_with(folder, "cnpg-restore", k8s=k8s)
    target = cluster(docs)["spec"]["bootstrap"]["recovery"]["recoveryTarget"]["targetTime"]
    assert datetime.fromisoformat(target).tzinfo is not None
    assert crd_problems([cluster(docs)]) == []


def test_the_monitoring_overlay_scrapes_every_instance_through_a_pod_monitor() -> None:
    docs = render_overlay(OVERLAY_DIR / "prod-monitoring")
    monitor = one(docs, "PodMonitor", CLUSTER)
    assert crd_problems([monitor]) == []
    assert monitor["spec"]["selector"]["matchLabels"]["cnpg.io/cluster"] == CLUSTER
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"  # the instance manager's exporter, 9187
    opened = one(docs, "NetworkPolicy", "oriserver-postgres-metrics")
    assert opened["spec"]["podSelector"]["matchLabels"] == {"cnpg.io/cluster": CLUSTER}
    assert [p["port"] for rule in opened["spec"]["ingress"] for p in rule["ports"]] == [9187]
