"""The Kustomize overlays render, pass strict schema validation, and hold the deployment rules."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import oriserver.cli.client_config  # registers the client's variables: `ori` runs in the pods too
import oriserver.config.settings  # noqa: F401 - registers every server variable
from oriserver.config import Settings, load_settings
from oriserver.config.database import DatabaseUrl
from oriserver.config.env import REGISTRY
from oriserver.rpc.server import EVENTS_SERVICE, MATHHELPER_SERVICE
from tests.delivery.tools import (
    OVERLAYS,
    ROOT,
    by_kind,
    container,
    cpu_cores,
    dockerfile_stages,
    effective_env,
    labels_match,
    on_this_machine,
    one,
    schema_problems,
)

Docs = list[dict[str, Any]]
Rendered = dict[str, Docs]

# The oldest Kubernetes these manifests target (the preStop `sleep` action is
# on by default from 1.30), and None for the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", None)
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def server(docs: Docs) -> dict[str, Any]:
    return one(docs, "Deployment", "oriserver")


def server_container(docs: Docs) -> dict[str, Any]:
    return container(server(docs)["spec"]["template"]["spec"], "server")


TOKENS_MOUNT = "/etc/oriserver/events-api"


def server_settings(docs: Docs) -> Settings:
    """What the server would parse from its ConfigMap and literal env in this overlay
    (the tokens file, on a Secret volume in the pod, is a local stand-in here)."""
    return load_settings(on_this_machine(effective_env(docs, server_container(docs))))


def pod_templates(docs: Docs) -> list[tuple[str, dict[str, Any]]]:
    """("Kind/name", pod template) of every workload."""
    return [
        (f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"])
        for doc in docs
        if doc["kind"] in WORKLOADS
    ]


def pod_specs(docs: Docs) -> list[tuple[str, dict[str, Any]]]:
    return [(name, template["spec"]) for name, template in pod_templates(docs)]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "latest")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_passes_strict_schema_validation(
    rendered: Rendered, overlay: str, version: str | None, tmp_path: Path
) -> None:
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered[overlay]))
    assert schema_problems(manifest, version) == []


def test_the_schema_check_fails_on_an_unknown_kind_and_an_unknown_field(tmp_path: Path) -> None:
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: typo}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: typo}\n"
        "spec: {clusterIp: None, ports: [{port: 1}]}\n"
    )
    problems = schema_problems(manifest, None)
    assert any("Deploymnet" in problem for problem in problems), problems
    assert any("clusterIp" in problem for problem in problems), problems
    assert any("0 of 2 resources" in problem for problem in problems), problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_stable_api_versions_are_used(rendered: Rendered, overlay: str) -> None:
    for doc in rendered[overlay]:
        assert not re.search(r"(alpha|beta)\d*$", doc["apiVersion"]), doc["apiVersion"]
    hpa_versions = {
        doc["apiVersion"] for doc in by_kind(rendered["prod"], "HorizontalPodAutoscaler")
    }
    assert hpa_versions == {"autoscaling/v2"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_standard_grpc_health_service_on_the_serving_port(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    spec = server_container(docs)
    port = server_settings(docs).port
    assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in spec["ports"]
    services = {}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc_action = spec[probe]["grpc"]
        assert grpc_action["port"] == port, probe
        services[probe] = grpc_action["service"]
    # Readiness follows the MathHelper service, liveness the server as a whole.
    assert services["readinessProbe"] == MATHHELPER_SERVICE
    assert services["startupProbe"] == MATHHELPER_SERVICE
    assert services["livenessProbe"] == ""


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_non_root_read_only_and_without_privileges(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    specs = pod_specs(docs)
    # prod's PostgreSQL pods are the CloudNativePG operator's, not a StatefulSet of ours.
    workloads = {"Deployment", "Job"} if overlay == "prod" else set(WORKLOADS)
    assert {name.split("/")[0] for name, _ in specs} == workloads
    for name, pod in specs:
        pod_context = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, name
        for item in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name} container {item['name']}"
            context = {**pod_context, **item.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, where
            uid = context.get("runAsUser")
            assert isinstance(uid, int), where
            assert uid > 0, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            assert "resources" in item, where
            assert set(item["resources"]) == {"requests", "limits"}, where
            mounts = {mount["mountPath"] for mount in item.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pods_run_as_the_uid_the_dockerfile_sets(rendered: Rendered, overlay: str) -> None:
    final_stage = dockerfile_stages(ROOT / "Dockerfile")[-1]
    user = [i.arguments for i in final_stage if i.keyword == "USER"][-1]
    uid = int(user.split(":")[0])
    for name, pod in pod_specs(rendered[overlay]):
        if name.startswith("StatefulSet/"):
            continue  # PostgreSQL runs as its own image's user
        assert pod["securityContext"]["runAsUser"] == uid, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_outlasts_the_prestop_sleep_call_grace_and_event_flush(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    pod = server(docs)["spec"]["template"]["spec"]
    config_map = one(
        docs, "ConfigMap", server_container(docs)["envFrom"][0]["configMapRef"]["name"]
    )
    # Set explicitly, not left to the defaults in the code.
    assert {"ORI_SHUTDOWN_GRACE_SECONDS", "ORI_EVENTS_SHUTDOWN_FLUSH_SECONDS"} <= set(
        config_map["data"]
    )
    settings = server_settings(docs)
    pre_stop = server_container(docs)["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = pre_stop + settings.shutdown_grace_s + settings.events.shutdown_flush_s
    assert pod["terminationGracePeriodSeconds"] > drain


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_map_holds_only_real_settings_that_parse(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    for name, pod in pod_specs(docs):
        for item in pod.get("initContainers", []) + pod["containers"]:
            for source in item.get("envFrom", []):
                data = one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
                unknown = sorted(set(data) - set(REGISTRY))
                assert unknown == [], f"{name}: not oriserver settings: {unknown}"
            literal = {e["name"] for e in item.get("env", []) if e["name"].startswith("ORI_")}
            assert literal <= set(REGISTRY), name
    # Every value parses the way the server parses it at start-up.
    server_settings(docs)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_server_never_migrates_and_a_job_runs_db_upgrade(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    settings = server_settings(docs)
    assert settings.events.database.dialect == "postgresql"
    assert settings.events.auto_migrate is False
    env = {e["name"]: e.get("value") for e in server_container(docs)["env"]}
    assert env["ORI_DB_AUTO_MIGRATE"] == "false", "set on the Deployment itself, not only in config"

    job = one(docs, "Job", "oriserver-db-upgrade")
    job_pod = job["spec"]["template"]["spec"]
    (migrate,) = job_pod["containers"]
    assert migrate.get("command") is None, "the image's ENTRYPOINT (oriserver) runs"
    assert migrate["args"] == ["db", "upgrade"]
    assert migrate["image"] == server_container(docs)["image"]
    assert job_pod["restartPolicy"] in {"Never", "OnFailure"}
    job_settings = load_settings(effective_env(docs, migrate))
    assert job_settings.events.database == settings.events.database


# Where each overlay's pods find the database password: dev's example Secret as
# PGPASSWORD; prod's whole URL in the Secret the CloudNativePG operator generates.
CREDENTIALS = {
    "dev": {"PGPASSWORD": ("oriserver-db", "password")},
    "prod": {"ORI_DATABASE_URL": ("oriserver-postgres-app", "uri")},
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_database_credentials_come_from_a_secret(rendered: Rendered, overlay: str) -> None:
    docs = rendered[overlay]
    for name, pod in pod_specs(docs):
        if name.startswith("StatefulSet/"):
            continue  # the dev database itself, checked below
        for item in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{item['name']}"
            found = {
                entry["name"]: (ref["name"], ref["key"])
                for entry in item.get("env", [])
                if entry["name"] in {"PGPASSWORD", "ORI_DATABASE_URL"}
                and (ref := entry.get("valueFrom", {}).get("secretKeyRef"))
            }
            assert found == CREDENTIALS[overlay], where
            literal = {e["name"] for e in item.get("env", []) if "value" in e}
            assert not literal & {"PGPASSWORD", "ORI_DATABASE_URL"}, where
            for source in item.get("envFrom", []):
                data = one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
                if overlay == "prod":
                    assert "ORI_DATABASE_URL" not in data, (
                        f"{where}: a stale URL beside the Secret's"
                    )
                else:
                    url = DatabaseUrl.parse(data["ORI_DATABASE_URL"])
                    assert url.redacted() == url.url, "no password inside ORI_DATABASE_URL"
    for name, pod in pod_specs(docs):
        for item in pod.get("initContainers", []) + pod["containers"]:
            for entry in item.get("env", []):
                if entry["name"] == "POSTGRES_PASSWORD":
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "oriserver-db", name


def test_the_prod_overlay_ships_no_secret_and_the_dev_secret_is_an_example(
    rendered: Rendered,
) -> None:
    assert by_kind(rendered["prod"], "Secret") == [], "applying prod must never overwrite it"
    secrets = {s["metadata"]["name"]: s for s in by_kind(rendered["dev"], "Secret")}
    assert set(secrets) == {"oriserver-db", "oriserver-events-api-tokens"}
    assert "example" in secrets["oriserver-db"]["stringData"]["password"]
    assert "example" in secrets["oriserver-events-api-tokens"]["stringData"]["tokens"]
    for secret in secrets.values():
        assert "example" in " ".join(secret["metadata"]["annotations"].values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_events_api_needs_a_token_from_a_secret_that_is_not_world_readable(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    spec = server(docs)["spec"]["template"]["spec"]
    env = effective_env(docs, server_container(docs))
    tokens = Path(env["ORI_EVENTS_API_TOKENS_FILE"])
    assert env["ORI_TOKEN_FILE"] == str(tokens), "ori in the pod sends the pod's token"
    (mount,) = [m for m in server_container(docs)["volumeMounts"] if m["mountPath"] == TOKENS_MOUNT]
    assert tokens.parent == Path(TOKENS_MOUNT)
    assert mount["readOnly"] is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "oriserver-events-api-tokens"
    assert {"key": "tokens", "path": tokens.name} in volume["secret"]["items"]
    assert volume["secret"]["defaultMode"] & 0o004 == 0, "the server refuses world-readable"
    assert volume["secret"]["defaultMode"] & 0o040, "the pod's group (fsGroup) must read it"
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
    assert server_settings(docs).access.credentials_required
    for name, pod in pod_specs(docs):  # the Job and the init step have no mount: no variable
        for item in pod.get("initContainers", []) + pod["containers"]:
            if item is not server_container(docs):
                names = {e["name"] for e in item.get("env", [])}
                assert "ORI_EVENTS_API_TOKENS_FILE" not in names, f"{name}/{item['name']}"


def test_prod_runs_several_replicas_spread_over_nodes_and_rolls_without_capacity_loss(
    rendered: Rendered,
) -> None:
    docs = rendered["prod"]
    deployment = server(docs)
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] in {0, 1}
    pod_labels = spec["template"]["metadata"]["labels"]
    spreads = spec["template"]["spec"]["topologySpreadConstraints"]
    by_node = [s for s in spreads if s["topologyKey"] == "kubernetes.io/hostname"]
    assert len(by_node) == 1
    assert labels_match(by_node[0]["labelSelector"]["matchLabels"], pod_labels)


def test_prod_autoscales_on_cpu_and_limits_voluntary_disruptions(rendered: Rendered) -> None:
    docs = rendered["prod"]
    deployment = server(docs)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "oriserver")
    assert 2 <= hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    metrics = [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert metrics == ["cpu"]
    (budget,) = by_kind(docs, "PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert labels_match(budget["spec"]["selector"]["matchLabels"], pod_labels)
    assert budget["spec"].get("maxUnavailable", 0) >= 1 or budget["spec"]["minAvailable"] < 2


def test_dev_runs_one_replica_without_autoscaler_or_disruption_budget(rendered: Rendered) -> None:
    docs = rendered["dev"]
    assert server(docs)["spec"]["replicas"] == 1
    assert by_kind(docs, "HorizontalPodAutoscaler") == []
    assert by_kind(docs, "PodDisruptionBudget") == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_count_matches_the_cpu_limit(rendered: Rendered, overlay: str) -> None:
    docs = rendered[overlay]
    limit = cpu_cores(server_container(docs)["resources"]["limits"]["cpu"])
    assert server_settings(docs).workers == math.ceil(limit)


def _ports(rules: list[dict[str, Any]]) -> set[tuple[int, str]]:
    found = set()
    for rule in rules:
        assert rule.get("ports"), f"a rule without ports allows every port: {rule}"
        found |= {(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]}
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_in_only_grpc_and_metrics_and_out_only_dns_and_postgres(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    policy = one(docs, "NetworkPolicy", "oriserver")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for name, template in pod_templates(docs):
        if not name.startswith("StatefulSet/"):
            labels = template["metadata"]["labels"]
            assert labels_match(selector, labels), f"{name} is not covered by the policy"
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    server_labels = server(docs)["spec"]["template"]["metadata"]["labels"]
    settings = server_settings(docs)
    assert _ports(policy["spec"]["ingress"]) == {
        (settings.port, "TCP"),
        (settings.metrics_port, "TCP"),
    }
    allowed_out = {(53, "UDP"), (53, "TCP"), (5432, "TCP")}
    for each in by_kind(docs, "NetworkPolicy"):
        if not labels_match(each["spec"]["podSelector"].get("matchLabels", {}), server_labels):
            continue  # the database's own policy (test_cnpg.py, or the StatefulSet's below)
        assert "Egress" in each["spec"]["policyTypes"], each["metadata"]["name"]
        assert _ports(each["spec"].get("egress", [])) <= allowed_out, each["metadata"]["name"]
    assert _ports(policy["spec"]["egress"]) == allowed_out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_only_server_pods_on_the_grpc_port(rendered: Rendered, overlay: str) -> None:
    docs = rendered[overlay]
    server_labels = server(docs)["spec"]["template"]["metadata"]["labels"]
    job_labels = one(docs, "Job", "oriserver-db-upgrade")["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in server_container(docs)["ports"]}
    grpc_services = [
        s for s in by_kind(docs, "Service") if s["metadata"]["name"].startswith("oriserver")
    ]
    grpc_services = [s for s in grpc_services if s["metadata"]["name"] != "oriserver-postgres"]
    types = {}
    for service in grpc_services:
        name = service["metadata"]["name"]
        selector = service["spec"]["selector"]
        assert labels_match(selector, server_labels), name
        assert not labels_match(selector, job_labels), f"{name} would route calls to the Job"
        grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
        assert grpc_port["targetPort"] in port_names, name
        types[name] = (service["spec"].get("type", "ClusterIP"), service["spec"].get("clusterIP"))
    assert types["oriserver"] == ("ClusterIP", None)
    assert types["oriserver-headless"] == ("ClusterIP", "None")
    if overlay == "prod":
        assert types["oriserver-public"][0] == "LoadBalancer"


def test_the_ingress_proxies_grpc_to_the_service_behind_tls(rendered: Rendered) -> None:
    docs = rendered["prod"]
    (ingress,) = by_kind(docs, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    tls_hosts = {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
    assert all(tls["secretName"] for tls in ingress["spec"]["tls"])
    routed = set()
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in tls_hosts
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = one(docs, "Service", backend["name"])
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
            routed.add((path["path"], path["pathType"]))
    # The public API only: the events API (the log of who called) is not routed.
    assert routed == {("/MathHelper/", "Prefix"), ("/grpc.health.v1.Health/", "Prefix")}
    assert not any(EVENTS_SERVICE.startswith(p.strip("/")) for p, _ in routed)


def test_dev_postgres_is_a_statefulset_with_a_volume_behind_a_headless_service(
    rendered: Rendered,
) -> None:
    docs = rendered["dev"]
    (database,) = by_kind(docs, "StatefulSet")
    headless = one(docs, "Service", database["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert labels_match(
        headless["spec"]["selector"], database["spec"]["template"]["metadata"]["labels"]
    )
    claims = {claim["metadata"]["name"] for claim in database["spec"]["volumeClaimTemplates"]}
    (postgres,) = database["spec"]["template"]["spec"]["containers"]
    assert claims & {mount["name"] for mount in postgres["volumeMounts"]}
    url = server_settings(docs).events.database.url
    assert url.startswith(f"postgresql://oriserver@{headless['metadata']['name']}:5432/")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_to_a_tag(rendered: Rendered, overlay: str) -> None:
    for name, pod in pod_specs(rendered[overlay]):
        for item in pod.get("initContainers", []) + pod["containers"]:
            image = item["image"]
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
            assert tag, f"{name}: {image} has no tag"
            assert tag != "latest", f"{name}: {image}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_namespace_enforces_the_restricted_pod_security_profile(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    (namespace,) = by_kind(docs, "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"]
