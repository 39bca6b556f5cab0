"""deploy/k8s/components/tls (overlay prod-tls): TLS on the pods, probes that speak it.

Rendered with `kubectl kustomize`, validated with `kubernetes-validate --strict`, and the
probe commands exactly as rendered (only the mounted paths and the port mapped to this
machine) are run against real servers: one with TLS, one without, one whose certificate
does not carry the name the probe expects.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from oriserver.config import load_settings
from tests.delivery.test_kubernetes import KUBERNETES_VERSIONS
from tests.delivery.tools import (
    OVERLAY_DIR,
    by_kind,
    container,
    find_tool,
    one,
    render_overlay,
    rendered_schema_problems,
)
from tests.security.pki import Authority
from tests.support.servers import ServerThread, running_server

Docs = list[dict[str, Any]]
MOUNT = "/etc/oriserver/tls"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


@pytest.fixture(scope="module")
def tls_overlay() -> Docs:
    return render_overlay(OVERLAY_DIR / "prod-tls")


def server_container(docs: Docs) -> dict[str, Any]:
    return container(one(docs, "Deployment", "oriserver")["spec"]["template"]["spec"], "server")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "latest")
def test_the_overlay_passes_strict_schema_validation(
    tls_overlay: Docs, tmp_path: Path, version: str | None
) -> None:
    assert rendered_schema_problems(tls_overlay, tmp_path, version) == []


def test_it_changes_only_the_server_pods_the_ingress_and_the_grpc_ports_protocol(
    tls_overlay: Docs, rendered: dict[str, Docs]
) -> None:
    def key(doc: Mapping[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    prod = {key(doc): doc for doc in rendered["prod"]}
    tls = {key(doc): doc for doc in tls_overlay}
    assert set(tls) == set(prod)
    changed = {k for k in prod if prod[k] != tls[k]}
    services = {k for k in prod if k[0] == "Service" and k[1] != "oriserver-postgres"}
    assert changed == {("Deployment", "oriserver"), ("Ingress", "oriserver"), *services}
    annotations = tls["Ingress", "oriserver"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
    for name in services:
        pairs = zip(prod[name]["spec"]["ports"], tls[name]["spec"]["ports"], strict=True)
        for before, after in pairs:
            assert {**after, "appProtocol": before["appProtocol"]} == before, name


# Kubernetes' own name for cleartext HTTP/2, and the IANA service name for HTTP over TLS
# (HTTP/2 is then agreed by ALPN); Kubernetes defines no name of its own for the latter.
APP_PROTOCOL = {False: "kubernetes.io/h2c", True: "https"}


@pytest.mark.parametrize("overlay", ["dev", "prod", "prod-tls"])
def test_every_service_port_to_the_pods_grpc_names_the_protocol_the_pods_speak(
    rendered: dict[str, Docs], tls_overlay: Docs, overlay: str
) -> None:
    docs = tls_overlay if overlay == "prod-tls" else rendered[overlay]
    env = {item["name"] for item in server_container(docs).get("env", [])}
    serves_tls = "ORI_TLS_CERT_FILE" in env
    assert serves_tls == (overlay == "prod-tls")
    grpc_ports = [
        (service["metadata"]["name"], port)
        for service in by_kind(docs, "Service")
        for port in service["spec"]["ports"]
        if port["targetPort"] == "grpc"
    ]
    assert len(grpc_ports) >= 2
    for name, port in grpc_ports:
        assert port.get("appProtocol") == APP_PROTOCOL[serves_tls], name


def test_the_server_reads_its_certificate_from_the_mounted_secret(tls_overlay: Docs) -> None:
    pod = one(tls_overlay, "Deployment", "oriserver")["spec"]["template"]["spec"]
    server = server_container(tls_overlay)
    env = {item["name"]: item.get("value") for item in server["env"]}
    assert env["ORI_TLS_CERT_FILE"] == f"{MOUNT}/tls.crt"
    assert env["ORI_TLS_KEY_FILE"] == f"{MOUNT}/tls.key"
    mount = next(m for m in server["volumeMounts"] if m["mountPath"] == MOUNT)
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "oriserver-server-tls"
    # Group-readable for the pod's fsGroup, not world-readable.
    assert volume["secret"]["defaultMode"] & 0o007 == 0
    assert pod["securityContext"]["fsGroup"] == server["securityContext"]["runAsGroup"]


def test_no_probe_is_left_speaking_plaintext(tls_overlay: Docs) -> None:
    server = server_container(tls_overlay)
    for name in PROBES:
        probe = server[name]
        assert "grpc" not in probe, name
        command = probe["exec"]["command"]
        assert command[:2] == ["ori", "health"], name
        assert f"--ca-file={MOUNT}/ca.crt" in command, name
        # Each attempt gives up before the kubelet does, so a hung call is a failure.
        (timeout,) = [
            float(arg.split("=", 1)[1]) for arg in command if arg.startswith("--timeout=")
        ]
        assert timeout < probe["timeoutSeconds"], name


# --- the probe commands, run -----------------------------------------------------------


def grpc_port(docs: Docs) -> int:
    ports = server_container(docs)["ports"]
    return int(next(p["containerPort"] for p in ports if p["name"] == "grpc"))


def localised(command: Sequence[str], secret_dir: Path, port: int, manifest_port: int) -> list[str]:
    """The probe as the kubelet runs it, with the Secret's mount and the port mapped here."""
    assert f"--port={manifest_port}" in command, "the probe must ask the container's gRPC port"
    args = [arg.replace(MOUNT, str(secret_dir)) for arg in command[1:]]
    args = [f"--port={port}" if arg.startswith("--port=") else arg for arg in args]
    return [find_tool(command[0]), *args]


def secret_dir(folder: Path, authority: Authority, dns: tuple[str, ...]) -> Path:
    """The files of Secret oriserver-server-tls, as cert-manager would write them."""
    leaf = authority.issue("server", server=True, dns=dns)
    folder.mkdir()
    shutil.copy(leaf.cert_file, folder / "tls.crt")
    shutil.copy(leaf.key_file, folder / "tls.key")
    shutil.copy(authority.cert_file, folder / "ca.crt")
    return folder


def serve(tmp_path: Path, env: Mapping[str, str]) -> AbstractContextManager[ServerThread]:
    settings = load_settings(
        {
            "ORI_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
            "ORI_METRICS_PORT": "0",
            **env,
        }
    )
    return running_server(settings)


def run_probes(docs: Docs, secrets: Path, port: int) -> dict[str, subprocess.CompletedProcess[str]]:
    server = server_container(docs)
    return {
        name: subprocess.run(
            localised(server[name]["exec"]["command"], secrets, port, grpc_port(docs)),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={"PATH": "/usr/bin:/bin"},  # no ORI_* from the developer's shell
        )
        for name in PROBES
    }


def tls_env(docs: Docs, secrets: Path) -> dict[str, str]:
    env = {item["name"]: item.get("value", "") for item in server_container(docs)["env"]}
    return {k: v.replace(MOUNT, str(secrets)) for k, v in env.items() if k.startswith("ORI_TLS_")}


def probe_results(
    docs: Docs, tmp_path: Path, *, names: tuple[str, ...], server_tls: bool
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the probes against a server whose certificate carries these DNS names."""
    authority = Authority.create("cluster", tmp_path / "ca")
    secrets = secret_dir(tmp_path / "secret", authority, dns=names)
    with serve(tmp_path, tls_env(docs, secrets) if server_tls else {}) as server:
        return run_probes(docs, secrets, server.port)


def test_the_probes_pass_against_the_pod_serving_tls(tls_overlay: Docs, tmp_path: Path) -> None:
    results = probe_results(tls_overlay, tmp_path, names=("oriserver",), server_tls=True)
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stdout, result.stderr)
        assert result.stdout.strip() == "SERVING", name


def test_the_probes_fail_against_a_plaintext_server(tls_overlay: Docs, tmp_path: Path) -> None:
    results = probe_results(tls_overlay, tmp_path, names=("oriserver",), server_tls=False)
    for name, result in results.items():
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert "UNAVAILABLE" in result.stderr, name


def test_the_probes_fail_when_the_certificate_does_not_name_oriserver(
    tls_overlay: Docs, tmp_path: Path
) -> None:
    results = probe_results(tls_overlay, tmp_path, names=("something-else",), server_tls=True)
    for name, result in results.items():
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert "Hostname Verification" in result.stderr, name
