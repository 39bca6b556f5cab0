"""The order of a rollout, on the rendered manifests: schema first, then ready pods.

Two promises of docs/deployment.md ("The order of a rollout"):
- a server pod cannot become Ready before the schema is at the revision its image needs:
  an init step runs `oriserver db wait` with the server's own image, settings and password;
- applying again after a change of config.env leaves the migration Job's pod template,
  which Kubernetes never lets change, exactly as it was (rendered twice from a copy).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from oriserver.cli.server_main import _parser
from oriserver.config import load_settings
from tests.delivery.tools import (
    OVERLAY_DIR,
    OVERLAYS,
    ROOT,
    container,
    effective_env,
    on_this_machine,
    one,
    render_overlay,
)

Docs = list[dict[str, Any]]
Rendered = dict[str, Docs]
JOB = "oriserver-db-upgrade"
# A setting no config.env sets, so adding it is a change wherever it is added.
CHANGE = ("ORI_DB_TIMEOUT_SECONDS", "7")


def pod_spec(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, kind, name)["spec"]["template"]["spec"]
    return spec


def init_step(docs: Docs) -> dict[str, Any]:
    steps = pod_spec(docs, "Deployment", "oriserver").get("initContainers", [])
    assert [step["name"] for step in steps] == ["wait-for-schema"], "one init step, the wait"
    step: dict[str, Any] = steps[0]
    return step


def secret_refs(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        item["name"]: (ref["name"], ref["key"])
        for item in spec.get("env", [])
        if (ref := item.get("valueFrom", {}).get("secretKeyRef"))
    }


def database_credentials(spec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The Secret keys a container reads the database password (or whole URL) from."""
    refs = secret_refs(spec)
    found = {name: refs[name] for name in ("PGPASSWORD", "ORI_DATABASE_URL") if name in refs}
    assert found, "no database credentials from a Secret"
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_pods_start_only_after_db_wait_with_the_servers_image_settings_and_password(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    server = container(pod_spec(docs, "Deployment", "oriserver"), "server")
    step = init_step(docs)
    # A native sidecar (restartPolicy: Always) would not hold the server back.
    assert "restartPolicy" not in step
    assert step.get("command") is None, "the image's ENTRYPOINT (oriserver) runs"
    assert step["args"][:2] == ["db", "wait"]
    _parser().parse_args(step["args"])  # the options exist; a typo exits 2 here
    assert step["image"] == server["image"], "the revision it waits for is the server's"
    assert step["envFrom"] == server["envFrom"]
    waited = load_settings(effective_env(docs, step)).events.database
    assert waited == load_settings(on_this_machine(effective_env(docs, server))).events.database
    assert database_credentials(step) == database_credentials(server)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_wait_lasts_as_long_as_the_migration_may_and_the_rollout_deadline_longer(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    args = _parser().parse_args(init_step(docs)["args"])
    migration_deadline = one(docs, "Job", JOB)["spec"]["activeDeadlineSeconds"]
    # Past the Job's deadline the migration has ended one way or the other; waiting on
    # would only hide a failure (the kubelet restarts the step, the pod shows Init:Error).
    assert args.timeout == migration_deadline
    deployment = one(docs, "Deployment", "oriserver")
    startup = container(deployment["spec"]["template"]["spec"], "server")["startupProbe"]
    start_budget = startup["periodSeconds"] * startup["failureThreshold"]
    # Otherwise a slow but successful migration would be reported as a failed rollout.
    assert deployment["spec"]["progressDeadlineSeconds"] > migration_deadline + start_budget


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_job_reads_the_servers_settings_from_a_config_map_without_a_hash(
    rendered: Rendered, overlay: str
) -> None:
    docs = rendered[overlay]
    (migrate,) = pod_spec(docs, "Job", JOB)["containers"]
    server = container(pod_spec(docs, "Deployment", "oriserver"), "server")
    (job_source,) = migrate["envFrom"]
    (server_source,) = server["envFrom"]
    job_map = one(docs, "ConfigMap", job_source["configMapRef"]["name"])
    server_map = one(docs, "ConfigMap", server_source["configMapRef"]["name"])
    assert job_map is not server_map
    assert job_map["data"] == server_map["data"], "an overlay merged config.env into one only"
    assert database_credentials(migrate) == database_credentials(server)


def rendered_after_config_change(tmp_path: Path, overlay: str, file: str) -> tuple[Docs, Docs]:
    """The overlay rendered from a copy of deploy/k8s, before and after adding to a config.env."""
    copy = tmp_path / "k8s"
    shutil.copytree(ROOT / "deploy" / "k8s", copy)
    before = render_overlay(copy / "overlays" / overlay)
    config = copy / file
    assert CHANGE[0] not in config.read_text()
    config.write_text(config.read_text() + "=".join(CHANGE) + "\n")
    return before, render_overlay(copy / "overlays" / overlay)


@pytest.mark.parametrize("file", ["base/config.env", "overlays/{overlay}/config.env"])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_config_env_change_leaves_the_jobs_immutable_pod_template_as_it_was(
    tmp_path: Path, overlay: str, file: str
) -> None:
    assert (OVERLAY_DIR / overlay / "config.env").is_file()
    before, after = rendered_after_config_change(tmp_path, overlay, file.format(overlay=overlay))
    # The change took effect: the server pods roll, and the Job would read the new value.
    assert (
        one(before, "Deployment", "oriserver")["spec"]["template"]
        != one(after, "Deployment", "oriserver")["spec"]["template"]
    )
    (source,) = pod_spec(after, "Job", JOB)["containers"][0]["envFrom"]
    new_data = one(after, "ConfigMap", source["configMapRef"]["name"])["data"]
    assert new_data[CHANGE[0]] == CHANGE[1]
    # ... and `kubectl apply` finds nothing to change in the Job.
    assert one(before, "Job", JOB)["spec"] == one(after, "Job", JOB)["spec"]
