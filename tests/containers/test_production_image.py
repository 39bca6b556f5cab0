"""The production image, built from the unmodified Dockerfile on the substitute base and run
the way the manifests run it: its own USER, a read-only root, /tmp as tmpfs, /data a volume,
no capabilities, published on 127.0.0.1 only."""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.servers import free_port
from tests.containers import images
from tests.containers.engine import Engine, EngineError, wait_for
from tests.security.pki import Authority
from tests.support.cli import ori

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

# The Deployment's terminationGracePeriodSeconds; compose gives the server 45 s.
GRACE_SECONDS = 60
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"oriserver-test-{prefix}-{os.getpid()}-{next(_names)}"


def launch(
    container_engine: Engine, image: str, *extra: str, command: tuple[str, ...] = ()
) -> tuple[str, int]:
    """Start the image as the manifests do; returns the container's name and host port."""
    name = unique("prod")
    volume = unique("data")
    container_engine.volumes.append(volume)
    port = free_port()
    container_engine.start_container(
        name,
        "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--volume", f"{volume}:/data",
        "--publish", f"127.0.0.1:{port}:50051", *extra, image, *command,
    )  # fmt: skip
    return name, port


def running(container_engine: Engine, name: str) -> bool:
    return container_engine.inspect(name, "{{.State.Running}}") == "true"


def problems_running(container_engine: Engine, name: str, port: int, *tls: str) -> list[str]:
    """What is wrong with a started container, judged from outside; [] when it is right.

    Stops at the first failure that makes the rest meaningless (a container that has exited).
    """
    if not wait_for(lambda: ori("--host", "127.0.0.1", *tls, "health", port=port).returncode == 0 or not running(container_engine, name), 60):  # fmt: skip
        return ["the server did not answer a health check within 60 s"]
    if not running(container_engine, name):
        logs = container_engine.run("logs", name, check=False)
        return [f"the container exited: {logs.stdout[-800:]}{logs.stderr[-800:]}"]
    problems = []
    uid = container_engine.out("exec", name, "id", "-u")
    if uid != "10001":
        problems.append(f"it runs as UID {uid}, not 10001")
    write = container_engine.run("exec", name, "touch", "/opt/venv/probe", check=False)
    if "Read-only file system" not in write.stderr:
        problems.append(f"the root filesystem accepted a write: {write.stderr}")
    answer = ori("--host", "127.0.0.1", *tls, "summation", "2", "3", port=port)
    if (answer.returncode, answer.stdout) != (0, "5\n"):
        problems.append(f"`ori summation 2 3` answered {answer.stdout!r} {answer.stderr!r}")
    if not wait_for(lambda: container_engine.health(name) == "healthy", 30):
        log = container_engine.inspect(name, "{{json .State.Health}}")
        problems.append(f"HEALTHCHECK did not report healthy: {log[-600:]}")
    return problems


def problems_of(container_engine: Engine, image: str) -> list[str]:
    try:
        name, port = launch(container_engine, image)
    except EngineError as error:
        return [f"the container did not start: {error}"]
    return problems_running(container_engine, name, port)


def test_it_runs_as_uid_10001_on_a_read_only_root_serves_the_host_and_is_healthy(
    container_engine: Engine, production_image: str
) -> None:
    assert problems_of(container_engine, production_image) == []


# Each line of the Dockerfile changed as a plausible mistake would change it, and the start of
# the problem the checks above must then report. Only the last layers are rebuilt (seconds).
MUTATIONS = {
    "missing COPY": (
        "COPY --from=builder /opt/venv /opt/venv\n",
        "",
        "the container did not start",
    ),
    # root without capabilities may not write to /data, owned by 10001: it exits at once.
    "wrong USER": ("USER 10001:10001\n", "USER root\n", "the container exited"),
    "bad ENTRYPOINT": (
        'ENTRYPOINT ["oriserver"]\n',
        'ENTRYPOINT ["ori"]\n',
        "the container exited",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_broken_dockerfile_fails_these_checks(
    container_engine: Engine, production_image: str, tmp_path: Path, mutation: str
) -> None:
    line, replacement, problem = MUTATIONS[mutation]
    text = (images.ROOT / "Dockerfile").read_text()
    assert text.count(line) == 1, f"the Dockerfile no longer has {line!r}"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(text.replace(line, replacement))
    tag = f"localhost/oriserver-test/mutant:{mutation.replace(' ', '-').lower()}-{os.getpid()}"
    container_engine.images.append(tag)
    images.project_image(container_engine, images.Builds(), tag, dockerfile)
    problems = problems_of(container_engine, tag)
    assert any(p.startswith(problem) for p in problems), problems


def test_it_serves_and_is_healthy_over_tls_with_the_tls_variables_and_mounted_certificates(
    container_engine: Engine, production_image: str, tmp_path: Path
) -> None:
    authority = Authority.create("container", tmp_path / "pki")
    leaf = authority.issue("server", server=True, dns=("localhost",), ips=("127.0.0.1",))
    for path in tmp_path.joinpath("pki").iterdir():
        path.chmod(0o644)  # the container's UID 10001 reads them
    tmp_path.joinpath("pki").chmod(0o755)
    certs = "/etc/oriserver/tls"
    name, port = launch(
        container_engine, production_image,
        "--volume", f"{tmp_path / 'pki'}:{certs}:ro",
        "--env", f"ORI_TLS_CERT_FILE={certs}/{leaf.cert_file.name}",
        "--env", f"ORI_TLS_KEY_FILE={certs}/{leaf.key_file.name}",
        "--env", f"ORI_TLS_CA_FILE={certs}/{authority.cert_file.name}",
    )  # fmt: skip
    tls = ("--ca-file", str(authority.cert_file))
    assert problems_running(container_engine, name, port, *tls) == []
    plaintext = ori("--host", "127.0.0.1", "--timeout", "3", "summation", "2", "3", port=port)
    assert plaintext.returncode == 1, "the server must not answer plaintext once TLS is on"


def event_counts(container_engine: Engine, container: str) -> Counter[str]:
    """Event types in the SQLite file on the container's /data volume, read from the host."""
    volume = container_engine.inspect(container, '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}')  # fmt: skip
    folder = Path(container_engine.inspect(volume, "{{.Mountpoint}}", what="volume"))
    with sqlite3.connect(f"file:{folder / 'oriserver.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT event_type FROM events").fetchall()
    return Counter(row[0] for row in rows)


def test_sigterm_exits_0_within_the_grace_period_with_every_answered_call_recorded(
    container_engine: Engine, production_image: str
) -> None:
    # Durability "async" (the default) answers before writing, so the events of these calls
    # are still buffered when the signal comes; the drain must write them.
    name, port = launch(container_engine, production_image)
    assert wait_for(lambda: ori("--host", "127.0.0.1", "health", port=port).returncode == 0, 60)
    answered = 0
    for first in range(20):
        result = ori("--host", "127.0.0.1", "summation", str(first), "1", port=port)
        assert result.returncode == 0, result.stderr
        answered += 1
    started = time.monotonic()
    container_engine.run("stop", "--time", str(GRACE_SECONDS), name, timeout=GRACE_SECONDS + 30)
    took = time.monotonic() - started
    assert container_engine.inspect(name, "{{.State.ExitCode}}") == "0", container_engine.run(
        "logs", name
    ).stderr
    assert took < GRACE_SECONDS, f"stopping took {took:.1f} s"
    counts = event_counts(container_engine, name)
    assert counts == {"CalculationRequested": answered, "CalculationSucceeded": answered}


def test_db_upgrade_runs_as_a_one_off_container_on_the_data_volume(
    container_engine: Engine, production_image: str
) -> None:
    volume = unique("migrate")
    container_engine.volumes.append(volume)
    mounts = ("--read-only", "--cap-drop", "ALL", "--volume", f"{volume}:/data")
    first = container_engine.run(
        "run", "--rm", *mounts, production_image, "db", "upgrade", check=False
    )
    again = container_engine.run(
        "run", "--rm", *mounts, production_image, "db", "upgrade", check=False
    )
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert "already at revision" in again.stdout + again.stderr
    assert "already at revision" not in first.stdout + first.stderr


def test_the_image_sizes_the_readme_gives_are_the_measured_ones(
    container_engine: Engine,
    production_image: str,
    development_image: str,
    request: pytest.FixtureRequest,
) -> None:
    sizes = {
        image: images.image_size(container_engine, image) / 1e6
        for image in (production_image, development_image, images.PYTHON_IMAGE)
    }
    record = images.timing_of(request.config)
    record["sizes"] = ", ".join(f"{image} {size:.0f} MB" for image, size in sizes.items())
    readme = (images.ROOT / "README.md").read_text()
    stated = re.search(
        r"production\s+image\s+measures\s+(\d+)\s+MB\s+and\s+the\s+development\s+image\s+(\d+)\s+MB",
        readme,
    )
    assert stated, "the README gives both image sizes"
    for image, text in zip((production_image, development_image), stated.groups(), strict=True):
        assert abs(int(text) - sizes[image]) <= 0.1 * sizes[image], (image, text, sizes[image])
