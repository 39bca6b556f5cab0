"""The dev overlay's Deployment, rendered by `kubectl kustomize` and run by `podman kube play`
with its ConfigMap and Secrets: as far as podman can take a Kubernetes pod.

What this shows: the pod starts under its security context (the UID, a read-only root, no
capabilities, no privilege escalation, its emptyDir mounts), the migration and the init step
run before the server, it serves, and the commands its probes stand for succeed inside it.
What it does not show: scheduling, Services, NetworkPolicies, admission (Pod Security),
resource limits, the kubelet's own probes and the rollout; those stay validated offline
(tests/delivery/).

podman 4.3 needs these changes to the rendered documents, each made in `for_podman`:
- The database is SQLite on the pod's /tmp emptyDir, not the StatefulSet (ORI_DATABASE_URL in
  both ConfigMaps), and the migration Job's container runs as the first init container:
  podman runs no Jobs. The Deployment's own init step (`db wait`) runs unchanged after it.
- restartPolicy OnFailure: podman applies a Deployment's Always to init containers too and
  restarts a finished migration forever.
- Each containerPort gets hostIP 127.0.0.1 and a free hostPort: podman otherwise publishes
  every containerPort on all interfaces at the same number.
- The events-API tokens Secret volume becomes a hostPath folder holding the file as the kubelet
  writes it (defaultMode 0440, group fsGroup): podman ignores defaultMode and fsGroup, and the
  server rightly refuses a world-readable tokens file.
- PGPASSWORD's secretKeyRef stays, but names a podman secret created beforehand in the form
  podman 4.3 reads for env (JSON of key to base64 value); from a Secret document in the same
  YAML it fails with "not valid JSON".
- The Deployment, its emptyDir and the podman secret get names unique to this run: podman
  makes an emptyDir a named volume, and secrets and volumes are global to the host.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.servers import free_port
from tests.containers.engine import Engine, wait_for
from tests.delivery.tools import OVERLAY_DIR, by_kind, container, one, render_overlay
from tests.support.cli import ori

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

DATABASE_URL = "sqlite:////tmp/oriserver.db"


def secret_values(doc: dict[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in doc.get("data", {}).items()}
    values.update(doc.get("stringData", {}))
    return values


def for_podman(
    docs: list[dict[str, Any]], suffix: str, folder: Path
) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]], dict[str, int]]:
    """The documents podman 4.3 is given (see the module docstring), the podman secrets to
    create (name -> key -> value) and the host ports (port name -> number)."""
    deployment = copy.deepcopy(one(docs, "Deployment", "oriserver"))
    job = one(docs, "Job", "oriserver-db-upgrade")
    config_maps = copy.deepcopy(by_kind(docs, "ConfigMap"))
    for config_map in config_maps:
        config_map["data"]["ORI_DATABASE_URL"] = DATABASE_URL
    deployment["metadata"]["name"] = f"oriserver-test-{suffix}"
    spec = deployment["spec"]["template"]["spec"]
    spec["restartPolicy"] = "OnFailure"
    spec["initContainers"] = copy.deepcopy(job["spec"]["template"]["spec"]["containers"]) + spec["initContainers"]  # fmt: skip
    host_ports: dict[str, int] = {}
    for port in container(spec, "server")["ports"]:
        host_ports[port["name"]] = free_port()
        port.update(hostIP="127.0.0.1", hostPort=host_ports[port["name"]])
    renamed = {}
    for volume in spec["volumes"]:
        if "emptyDir" in volume:
            renamed[volume["name"]] = f"oriserver-test-{volume['name']}-{suffix}"
            volume["name"] = renamed[volume["name"]]
        elif "secret" in volume:
            source = volume.pop("secret")
            secret = one(docs, "Secret", source["secretName"])
            target = folder / volume["name"]
            target.mkdir(mode=0o755)
            for item in source["items"]:
                path = target / item["path"]
                path.write_text(secret_values(secret)[item["key"]])
                os.chown(path, 0, spec["securityContext"]["fsGroup"])
                path.chmod(source["defaultMode"])
            volume["hostPath"] = {"path": str(target), "type": "Directory"}
    secrets: dict[str, dict[str, str]] = {}
    for box in spec["initContainers"] + spec["containers"]:
        for mount in box.get("volumeMounts", []):
            mount["name"] = renamed.get(mount["name"], mount["name"])
        for variable in box.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                values = secret_values(one(docs, "Secret", ref["name"]))
                ref["name"] = f"{ref['name']}-{suffix}"
                secrets[ref["name"]] = values
    return [*config_maps, deployment], secrets, host_ports


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render_overlay(OVERLAY_DIR / "dev")


@pytest.fixture(scope="module")
def pod(
    container_engine: Engine, production_image: str, rendered: list[dict[str, Any]]
) -> Iterator[tuple[str, dict[str, int]]]:
    if not container_engine.is_podman:
        pytest.skip("the Kubernetes pod check needs podman (`podman kube play`); Docker has none")
    suffix = str(os.getpid())
    folder = Path(tempfile.mkdtemp(prefix="oriserver-kube-"))
    folder.chmod(0o755)
    docs, secrets, host_ports = for_podman(rendered, suffix, folder)
    manifest = folder / "pod.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    name = f"{docs[-1]['metadata']['name']}-pod-0"
    container_engine.pods.append(name)
    spec = docs[-1]["spec"]["template"]["spec"]
    container_engine.volumes += [v["name"] for v in spec["volumes"] if "emptyDir" in v]
    for secret, values in secrets.items():
        container_engine.secrets.append(secret)
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        container_engine.run("secret", "create", secret, "-", stdin=json.dumps(encoded))
    try:
        container_engine.run("kube", "play", str(manifest), timeout=300)
        yield f"{name}-server", host_ports
    finally:
        container_engine.run("kube", "down", str(manifest), check=False, timeout=120)


def server_spec(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    spec = one(rendered, "Deployment", "oriserver")["spec"]["template"]["spec"]
    return container(spec, "server")


def test_the_pod_runs_under_its_security_context_with_its_empty_dir_mounts(
    container_engine: Engine, pod: tuple[str, dict[str, int]], rendered: list[dict[str, Any]]
) -> None:
    name, _ = pod
    context = server_spec(rendered)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert container_engine.out("exec", name, "id", "-u") == str(context["runAsUser"])
    assert container_engine.out("exec", name, "id", "-g") == str(context["runAsGroup"])
    assert context["readOnlyRootFilesystem"] is True
    write = container_engine.run("exec", name, "touch", "/opt/venv/probe", check=False)
    assert "Read-only file system" in write.stderr, write
    assert context["capabilities"]["drop"] == ["ALL"]
    status = container_engine.out(
        "exec", name, "grep", "-E", "^(CapEff|NoNewPrivs)", "/proc/1/status"
    )
    assert status.split() == ["CapEff:", "0000000000000000", "NoNewPrivs:", "1"]
    spec = one(rendered, "Deployment", "oriserver")["spec"]["template"]["spec"]
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    mounts = [m["mountPath"] for m in server_spec(rendered)["volumeMounts"] if m["name"] in empty_dirs]  # fmt: skip
    assert mounts, "the server declares an emptyDir mount"
    for path in mounts:
        container_engine.run("exec", name, "touch", f"{path}/probe")


def test_the_pod_serves_from_its_published_port_after_its_init_steps(
    container_engine: Engine, pod: tuple[str, dict[str, int]], rendered: list[dict[str, Any]]
) -> None:
    name, host_ports = pod
    port = host_ports["grpc"]
    assert wait_for(lambda: ori("--host", "127.0.0.1", "health", port=port).returncode == 0, 60)
    answer = ori("--host", "127.0.0.1", "summation", "2", "3", port=port)
    assert (answer.returncode, answer.stdout) == (0, "5\n"), answer.stderr
    # The dev overlay answers only once a call's events are written (durability sync) and the
    # server does not migrate, so this answer means the migration ran before the server.
    assert container_engine.out("exec", name, "printenv", "ORI_EVENTS_DURABILITY") == "sync"
    assert container_engine.out("exec", name, "printenv", "ORI_DB_AUTO_MIGRATE") == "false"
    password = secret_values(one(rendered, "Secret", "oriserver-db"))["password"]
    assert container_engine.out("exec", name, "printenv", "PGPASSWORD") == password
    tokens = container_engine.out("exec", name, "printenv", "ORI_EVENTS_API_TOKENS_FILE")
    totals = container_engine.run(
        "exec", name, "ori", "--token-file", tokens, "totals", check=False
    )
    assert totals.returncode == 0, totals.stderr


def probe_command(probe: dict[str, Any]) -> list[str]:
    """The command a probe stands for: exec as written; grpc as `ori health` on its port."""
    if "exec" in probe:
        return [str(part) for part in probe["exec"]["command"]]
    grpc = probe["grpc"]
    return ["ori", "health", "--port", str(grpc["port"]), "--service", grpc.get("service", "")]


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
def test_the_commands_of_the_probes_succeed_inside_the_pod(
    container_engine: Engine,
    pod: tuple[str, dict[str, int]],
    rendered: list[dict[str, Any]],
    probe: str,
) -> None:
    name, host_ports = pod
    assert wait_for(lambda: ori("--host", "127.0.0.1", "health", port=host_ports["grpc"]).returncode == 0, 60)  # fmt: skip
    command = probe_command(server_spec(rendered)[probe])
    result = container_engine.run("exec", name, *command, check=False)
    assert (result.returncode, result.stdout) == (0, "SERVING\n"), result.stderr
