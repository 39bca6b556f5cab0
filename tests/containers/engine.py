"""The container engine the tier drives: podman (or Docker), with everything it starts tracked
and removed at the end of the session, whichever way the tests went."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTAINERS_CONF = HERE / "containers.conf"
# What the skip line tells a machine without an engine to install (Debian's names).
APT_PACKAGES = (
    "podman runc netavark aardvark-dns catatonit conmon slirp4netns iptables uidmap "
    "fuse-overlayfs debootstrap"
)
INSTALL_HINT = (
    "container tier skipped: no container engine here; install podman "
    f"(apt-get install {APT_PACKAGES}) or Docker to build and run the images"
)


class EngineError(AssertionError):
    """An engine command failed; the message holds the command and its output."""


def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    """Poll ``check`` every half second until it holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def explain(result: subprocess.CompletedProcess[str]) -> str:
    command = " ".join(str(part) for part in result.args)
    return f"$ {command}\n(exit {result.returncode})\n{result.stdout}{result.stderr}"


@dataclass
class Engine:
    """One engine binary and the names of what this session created with it."""

    binary: str
    kind: str  # "podman" or "docker"
    env: dict[str, str]
    containers: list[str] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    @property
    def is_podman(self) -> bool:
        return self.kind == "podman"

    def run(
        self, *args: str, timeout: float = 120, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args],
            env=self.env, input=stdin, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise EngineError(explain(result))
        return result

    def out(self, *args: str, timeout: float = 120) -> str:
        return self.run(*args, timeout=timeout).stdout.strip()

    def inspect(self, name: str, template: str, what: str = "container") -> str:
        return self.out(what, "inspect", "--format", template, name)

    def exists(self, what: str, name: str) -> bool:
        # podman 4.3 has no `secret exists`; Docker has no `exists` at all.
        command = (what, "exists") if self.is_podman and what != "secret" else (what, "inspect")
        return self.run(*command, name, check=False).returncode == 0

    def start_container(self, name: str, *args: str) -> str:
        """`run -d --name NAME ...`, remembered for the cleanup before it starts."""
        self.containers.append(name)
        return self.out("run", "-d", "--name", name, *args)

    def health(self, name: str) -> str:
        """One run of the container's HEALTHCHECK and the status it leaves.

        podman schedules health checks with systemd timers, and these machines have no systemd,
        so the test runs the check itself, as the timer would; Docker runs its own.
        """
        if self.is_podman:
            self.run("healthcheck", "run", name, check=False, timeout=60)
        return self.inspect(name, "{{.State.Health.Status}}")

    def cleanup(self) -> list[str]:
        """Remove everything recorded, newest first; returns what could not be removed."""
        problems: list[str] = []
        steps: list[tuple[str, Sequence[str], list[str]]] = [
            ("container", ("rm", "--force", "--volumes"), self.containers),
            ("pod", ("pod", "rm", "--force"), self.pods),
            ("network", ("network", "rm", "--force"), self.networks),
            ("volume", ("volume", "rm", "--force"), self.volumes),
            ("secret", ("secret", "rm"), self.secrets),
            ("image", ("rmi", "--force"), self.images),
        ]
        for what, command, names in steps:
            for name in reversed(names):
                if not self.exists(what, name):
                    continue
                result = self.run(*command, name, check=False, timeout=120)
                if result.returncode != 0:
                    problems.append(f"{what} {name}: {result.stderr.strip()}")
            names.clear()
        return problems


def why_not_here() -> str | None:
    """The one line the tier is skipped with on this machine, or None when it can run."""
    if find_engine() is None:
        return INSTALL_HINT
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        return (
            "container tier skipped: the substitute base images need debootstrap, run as root "
            "(apt-get install debootstrap)"
        )
    return None


def find_engine() -> Engine | None:
    """podman when installed (configured by containers.conf), else a Docker daemon that answers."""
    env = dict(os.environ)
    podman = shutil.which("podman")
    if podman:
        env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
        return Engine(podman, "podman", env)
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "info"], capture_output=True, text=True, timeout=30, check=False, env=env
        )
        if probe.returncode == 0:
            return Engine(docker, "docker", env)
    return None


@contextlib.contextmanager
def docker_api(container_engine: Engine) -> Iterator[dict[str, str]]:
    """The environment for a Compose client: podman's Docker-compatible API on a private socket
    (`podman system service`), stopped afterwards; Docker's own daemon as it is configured."""
    if not container_engine.is_podman:
        yield dict(container_engine.env)
        return
    folder = Path(tempfile.mkdtemp(prefix="oriserver-podman-api-"))
    socket = folder / "podman.sock"
    log = (folder / "service.log").open("w")
    service = subprocess.Popen(
        [container_engine.binary, "system", "service", "--time=0", f"unix://{socket}"],
        env=container_engine.env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                log.flush()
                said = (folder / "service.log").read_text()[-2000:]
                raise EngineError(f"podman system service did not start: {said}")
            time.sleep(0.1)
        yield {**container_engine.env, "DOCKER_HOST": f"unix://{socket}"}
    finally:
        service.terminate()
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=20)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def clean_env(env: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """``env`` without the project's and Compose's variables, plus overrides."""
    kept = {
        key: value
        for key, value in env.items()
        if not key.startswith(("ORI_", "ORISERVER_", "COMPOSE_"))
    }
    kept.update(overrides)
    return kept
