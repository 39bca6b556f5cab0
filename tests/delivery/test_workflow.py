"""The CI/CD workflow passes actionlint, runs the whole gate, builds the image on pull
requests without pushing it, and publishes only from main and tags."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.delivery.tools import (
    OVERLAY_DIR,
    ROOT,
    WORKFLOW,
    by_kind,
    explain,
    one,
    render_overlay,
    run_tool,
)

Workflow = dict[str, Any]


@pytest.fixture(scope="module")
def workflow() -> Workflow:
    parsed: Workflow = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean true.
    parsed["on"] = parsed.pop(True)
    return parsed


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def scripts(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_the_workflow_passes_actionlint() -> None:
    result = run_tool("actionlint", "-no-color", str(WORKFLOW))
    assert result.returncode == 0, explain(result)


def test_actionlint_fails_on_an_unknown_key_and_a_bad_expression(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    timeout: 5\n"
        "    steps:\n      - run: echo ${{ github.nope( }}\n"
    )
    result = run_tool("actionlint", "-no-color", str(bad))
    assert result.returncode != 0, explain(result)
    assert 'unexpected key "timeout"' in result.stdout, explain(result)
    assert "[expression]" in result.stdout, explain(result)


def test_every_push_and_pull_request_runs_the_whole_gate_on_python_3_11(
    workflow: Workflow,
) -> None:
    triggers = workflow["on"]
    assert triggers["push"]["branches"] == ["**"]
    assert "v*.*.*" in triggers["push"]["tags"]
    assert "pull_request" in triggers
    assert triggers["pull_request"] is None, "no filter: every pull request"
    test = workflow["jobs"]["test"]
    assert test["if"] == "github.event_name != 'workflow_dispatch'"
    (python,) = steps_using(test, "actions/setup-python")
    assert python["with"]["python-version"] == "3.11"
    assert re.search(r"^scripts/test$", scripts(test), re.MULTILINE)
    assert (ROOT / "scripts" / "test").is_file()


def test_the_tests_run_against_a_postgresql_service_container(workflow: Workflow) -> None:
    test = workflow["jobs"]["test"]
    postgres = test["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "--health-cmd" in postgres["options"]
    host_port = int(postgres["ports"][0].split(":")[0])
    database = postgres["env"]["POSTGRES_DB"]
    url = test["env"]["ORI_TEST_DATABASE_URL"]
    assert re.fullmatch(rf"postgresql://\w+@localhost:{host_port}/{database}", url), url


def test_images_are_pushed_only_from_main_and_version_tags_with_layer_caching(
    workflow: Workflow,
) -> None:
    image = workflow["jobs"]["image"]
    assert image["needs"] == "test"
    condition = " ".join(image["if"].split())
    assert "github.event_name == 'push'" in condition
    assert "github.ref == 'refs/heads/main'" in condition
    assert "startsWith(github.ref, 'refs/tags/v')" in condition
    assert image["permissions"] == {"contents": "read", "packages": "write"}
    assert steps_using(image, "docker/setup-buildx-action")
    (login,) = steps_using(image, "docker/login-action")
    credential = login["with"]["password"]
    assert credential.startswith("${{ secrets."), "registry credentials come from secrets"
    (meta,) = steps_using(image, "docker/metadata-action")
    tags = meta["with"]["tags"]
    assert "type=sha" in tags
    assert "type=semver,pattern={{version}}" in tags
    (build,) = steps_using(image, "docker/build-push-action")
    assert build["with"]["push"] is True
    assert build["with"]["tags"] == f"${{{{ steps.{meta['id']}.outputs.tags }}}}"
    assert build["with"]["cache-from"] == "type=gha"
    assert build["with"]["cache-to"].startswith("type=gha")
    assert build["with"]["file"] == "Dockerfile"


def test_pull_requests_build_and_start_the_image_without_pushing_it(workflow: Workflow) -> None:
    (name,) = [
        name
        for name, job in workflow["jobs"].items()
        if "pull_request" in job.get("if", "") and steps_using(job, "docker/build-push-action")
    ]
    check = workflow["jobs"][name]
    assert " ".join(check["if"].split()) == "github.event_name == 'pull_request'"
    assert "needs" not in check, "a broken Dockerfile shows even when a test fails"
    assert not steps_using(check, "docker/login-action"), "no registry credentials"
    assert "write" not in check.get("permissions", workflow["permissions"]).values()
    (build,) = steps_using(check, "docker/build-push-action")
    (release,) = steps_using(workflow["jobs"]["image"], "docker/build-push-action")
    assert build["with"]["push"] is False
    assert (build["with"]["context"], build["with"]["file"]) == (
        release["with"]["context"],
        release["with"]["file"],
    ), "the image a pull request builds is the one a merge pushes"
    assert build["with"]["load"] is True
    tag = build["with"]["tags"]
    commands = scripts(check)
    assert f"docker run --rm {tag} --version" in commands
    assert f"docker run --detach --name oriserver-pr {tag}" in commands
    assert ".State.Health.Status" in commands, "the HEALTHCHECK is waited for"
    assert '[ "$status" = healthy ]' in commands


def test_every_action_is_pinned_to_a_major_version_or_a_commit(workflow: Workflow) -> None:
    used = [
        step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step
    ]
    assert len(used) >= 7
    for reference in used:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", reference), reference


def test_the_workflow_grants_only_read_access_by_default(workflow: Workflow) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions", {})
        assert set(granted.values()) <= {"read", "write"}, name
        if name != "image":
            assert "write" not in granted.values(), name


def test_the_manual_deploy_pins_the_image_and_applies_the_prod_overlay(
    workflow: Workflow,
) -> None:
    assert workflow["on"]["workflow_dispatch"]["inputs"]["image_tag"]["required"] is True
    deploy = workflow["jobs"]["deploy"]
    assert deploy["if"] == "github.event_name == 'workflow_dispatch'"
    assert deploy["environment"] == "production"
    commands = scripts(deploy)
    assert 'kustomize edit set image "oriserver=$image"' in commands
    assert "kubectl apply -k deploy/k8s/overlays/prod" in commands
    assert "wait --for=condition=complete job/oriserver-db-upgrade" in commands
    # The previous Job goes before the apply: its pod template cannot take a new image.
    delete = commands.index("delete job oriserver-db-upgrade --ignore-not-found")
    assert delete < commands.index("kubectl apply -k deploy/k8s/overlays/prod")
    prod = render_overlay(OVERLAY_DIR / "prod")
    (namespace,) = by_kind(prod, "Namespace")
    assert deploy["env"]["NAMESPACE"] == namespace["metadata"]["name"]
    # It waits for the migration as long as the Job may run.
    deadline = one(prod, "Job", "oriserver-db-upgrade")["spec"]["activeDeadlineSeconds"]
    (wait_for,) = re.findall(r"job/oriserver-db-upgrade --timeout=(\d+)m", commands)
    assert int(wait_for) * 60 >= deadline
    assert "${{" not in commands, "inputs reach scripts through env, never inline"
    assert (OVERLAY_DIR / "prod" / "kustomization.yaml").is_file()
