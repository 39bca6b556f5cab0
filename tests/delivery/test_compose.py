"""Both compose files pass `docker-compose config` and wire the stacks as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import oriserver.config.settings  # noqa: F401 - registers every server variable
from oriserver.config import Settings, load_settings
from oriserver.config.env import REGISTRY
from tests.delivery.tools import (
    COMPOSE_FILES,
    ROOT,
    clean_environment,
    compose_model,
    dockerfile_stages,
    exec_form,
    explain,
    run_tool,
    seconds,
)

PROD, DEV = COMPOSE_FILES


def oriserver_services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the oriserver image (the server and admin processes)."""
    return {
        name: service
        for name, service in model["services"].items()
        if str(service.get("image", "")).startswith("oriserver:")
    }


def settings_of(service: dict[str, Any]) -> Settings:
    return load_settings(service["environment"])


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_the_compose_file_passes_docker_compose_config(file: str) -> None:
    result = run_tool(
        "docker-compose", "-f", file, "config", "-q", env=clean_environment(ORI_PORT="50051")
    )
    assert result.returncode == 0, explain(result)
    assert result.stdout == ""


def test_docker_compose_config_rejects_an_unknown_dependency_condition(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yml"
    bad.write_text(
        "services:\n  a:\n    image: x:1\n    depends_on:\n"
        "      b: {condition: service_finished}\n  b:\n    image: x:1\n"
    )
    result = run_tool("docker-compose", "-f", str(bad), "config", "-q", env=clean_environment())
    assert result.returncode != 0, explain(result)


@pytest.mark.parametrize("file", COMPOSE_FILES)
@pytest.mark.parametrize(("ori_port", "published"), [(None, "50051"), ("50061", "50061")])
def test_ori_port_chooses_the_published_grpc_port(
    file: str, ori_port: str | None, published: str
) -> None:
    model = compose_model(file, **({"ORI_PORT": ori_port} if ori_port else {}))
    server = model["services"]["oriserver"]
    grpc = [p for p in server["ports"] if p["target"] == settings_of(server).port]
    assert [p["published"] for p in grpc] == [published]


def test_the_server_waits_for_a_healthy_database_and_a_finished_migration() -> None:
    model = compose_model(PROD, ORI_PORT="50051")
    services = model["services"]
    postgres = services["postgres"]
    assert postgres["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert services["oriserver"]["depends_on"] == {
        "postgres": {"condition": "service_healthy", "required": True},
        "migrate": {"condition": "service_completed_successfully", "required": True},
    }
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate.get("entrypoint") is None, "the image's ENTRYPOINT (oriserver) runs"
    assert migrate["image"] == services["oriserver"]["image"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


def test_the_database_lives_in_a_named_volume() -> None:
    model = compose_model(PROD, ORI_PORT="50051")
    (mount,) = model["services"]["postgres"]["volumes"]
    assert mount["type"] == "volume"
    assert mount["source"] in model["volumes"]
    assert mount["target"] == "/var/lib/postgresql/data"


@pytest.mark.parametrize("from_shell", [None, "set-in-the-shell"])
def test_the_compose_password_is_an_example_unless_the_environment_sets_one(
    from_shell: str | None,
) -> None:
    env = {"ORISERVER_POSTGRES_PASSWORD": from_shell} if from_shell else {}
    model = compose_model(PROD, **env)
    password = model["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password == from_shell if from_shell else "example" in password
    for name, service in oriserver_services(model).items():
        assert service["environment"]["PGPASSWORD"] == password, name
        database = settings_of(service).events.database
        assert database.redacted() == database.url, f"{name}: a password inside the URL"


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_compose_sets_only_real_settings_and_they_parse(file: str) -> None:
    for name, service in oriserver_services(compose_model(file)).items():
        names = {key for key in service["environment"] if key.startswith("ORI_")}
        assert names <= set(REGISTRY), f"{name}: {sorted(names - set(REGISTRY))}"
        settings_of(service)


def test_the_production_like_server_never_migrates_itself() -> None:
    server = compose_model(PROD)["services"]["oriserver"]
    settings = settings_of(server)
    assert settings.events.database.dialect == "postgresql"
    assert settings.events.auto_migrate is False


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_docker_waits_for_the_drain_before_killing_the_server(file: str) -> None:
    server = compose_model(file)["services"]["oriserver"]
    settings = settings_of(server)
    drain = settings.shutdown_grace_s + settings.events.shutdown_flush_s
    assert seconds(server["stop_grace_period"]) > drain


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_the_server_container_is_read_only_without_capabilities(file: str) -> None:
    for name, service in oriserver_services(compose_model(file)).items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in service["tmpfs"], name


def test_the_dev_stack_reloads_mounted_source_with_sqlite_in_a_volume() -> None:
    model = compose_model(DEV)
    server = model["services"]["oriserver"]
    assert server["build"]["dockerfile"] == "Dockerfile.dev"
    final = dockerfile_stages(ROOT / "Dockerfile.dev")[-1]
    watched = exec_form(next(i.arguments for i in final if i.keyword == "CMD"))[-1]
    mounts = {m["target"]: m for m in server["volumes"]}
    assert mounts[watched]["type"] == "bind"
    assert Path(mounts[watched]["source"]) == ROOT / "src"
    database = settings_of(server).events.database
    assert database.dialect == "sqlite"
    assert database.sqlite_path is not None
    data = mounts[str(database.sqlite_path.parent)]
    assert data["type"] == "volume"
    assert data["source"] in model["volumes"]


def test_a_plain_down_tears_down_either_stack() -> None:
    prod, dev = compose_model(PROD), compose_model(DEV)
    assert prod["name"] == dev["name"]
    assert set(dev["services"]) <= set(prod["services"])


def test_the_database_is_the_official_postgres_image_unless_a_substitute_is_named() -> None:
    # tests/containers/ names its PostgreSQL image built from Debian's package this way.
    default = compose_model("docker-compose.yml")["services"]["postgres"]["image"]
    assert default == "postgres:17"
    named = compose_model("docker-compose.yml", ORISERVER_POSTGRES_IMAGE="localhost/pg:15")
    assert named["services"]["postgres"]["image"] == "localhost/pg:15"
