"""The images the tier builds: substitute base images (no registry is reachable here), then the
project's images from its unmodified Dockerfiles on top of them.

The bases are a Debian bookworm root filesystem made by debootstrap from the mirror apt uses,
imported into the engine, and two images built on it (base/*.Containerfile): a stand-in for
python:3.11-slim and one for postgres. Each carries a label with the hash of everything that
went into it and is reused while that hash is unchanged, so only a cold machine pays for them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.containers.engine import Engine, EngineError, explain

ROOT = Path(__file__).resolve().parents[2]
BASE = Path(__file__).resolve().parent / "base"
KEY_LABEL = "org.oriserver.test.cache-key"
SUITE = "bookworm"

DEBIAN_IMAGE = f"localhost/oriserver-test/debian:{SUITE}"
PYTHON_IMAGE = f"localhost/oriserver-test/python:3.11-{SUITE}"
POSTGRES_IMAGE = f"localhost/oriserver-test/postgres:{SUITE}"
# The names docker-compose.yml and docker-compose.dev.yml give the images they run.
PRODUCTION_IMAGE = "oriserver:local"
DEVELOPMENT_IMAGE = "oriserver:dev"


TIMING = pytest.StashKey[dict[str, object]]()


def timing_of(config: pytest.Config) -> dict[str, object]:
    """What the tier records for its summary line: start time, builds, image sizes."""
    return config.stash.setdefault(TIMING, {})


@dataclass(frozen=True)
class Built:
    image: str
    seconds: float
    reused: bool


class Builds:
    """What was built or reused in this session, for the tier's timing line."""

    def __init__(self) -> None:
        self.entries: list[Built] = []

    def add(self, image: str, started: float, reused: bool) -> None:
        self.entries.append(Built(image, time.monotonic() - started, reused))

    def summary(self) -> str:
        return ", ".join(
            f"{b.image} {'reused' if b.reused else 'built'} in {b.seconds:.0f} s"
            for b in self.entries
        )


def apt_mirror() -> str:
    """The Debian archive apt is configured with (deb822 or one-line sources), for debootstrap."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
        for match in re.finditer(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", text, re.MULTILINE):
            return match.group(1)
    return "http://deb.debian.org/debian"


def host_ca_bundle() -> Path:
    """The CA bundle this machine's pip trusts (an intercepting proxy's CA among them)."""
    for variable in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    return Path("/etc/ssl/certs/ca-certificates.crt")


def host_pip_conf() -> str:
    """A pip.conf with the host pip's index settings that can work inside a container.

    Read from `pip config list` (which merges /etc/pip.conf, the user's file and PIP_*
    variables). Only http(s) indexes are kept: file:// indexes and find-links name folders
    that exist on this machine only.
    """
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    settings: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout"):
            settings[name.replace("default-", "")] = value.strip().strip("'\"")
    lines = ["[global]"]
    for name, raw in sorted(settings.items()):
        value = raw
        if name.endswith("index-url"):
            value = " ".join(url for url in raw.split() if url.startswith(("http:", "https:")))
        if value:
            lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"


def _key(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:32]


def _cached(container_engine: Engine, image: str, key: str) -> bool:
    if not container_engine.exists("image", image):
        return False
    labels = container_engine.inspect(image, "{{json .Config.Labels}}", what="image")
    return f'"{KEY_LABEL}":"{key}"' in labels


def debian_rootfs(container_engine: Engine, builds: Builds) -> str:
    """A minimal bookworm root filesystem from debootstrap, imported as an image."""
    mirror = apt_mirror()
    key = _key(f"debootstrap --variant=minbase {SUITE} {mirror}".encode())
    started = time.monotonic()
    if _cached(container_engine, DEBIAN_IMAGE, key):
        builds.add(DEBIAN_IMAGE, started, reused=True)
        return DEBIAN_IMAGE
    folder = Path(tempfile.mkdtemp(prefix="oriserver-rootfs-"))
    try:
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, str(folder), mirror],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise EngineError(explain(result))
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (folder / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", str(folder), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [container_engine.binary, "import", "--change", f"LABEL {KEY_LABEL}={key}", "-", DEBIAN_IMAGE],
            stdin=tar.stdout, env=container_engine.env, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        tar.wait(timeout=60)
        if imported.returncode != 0 or tar.returncode != 0:
            raise EngineError(explain(imported))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    builds.add(DEBIAN_IMAGE, started, reused=False)
    return DEBIAN_IMAGE


def _build_base(
    container_engine: Engine,
    builds: Builds,
    image: str,
    containerfile: str,
    files: dict[str, bytes],
) -> str:
    parent = container_engine.inspect(DEBIAN_IMAGE, "{{.Id}}", what="image").encode()
    recipe = (BASE / containerfile).read_bytes()
    key = _key(recipe, parent, *(name.encode() + data for name, data in sorted(files.items())))
    started = time.monotonic()
    if _cached(container_engine, image, key):
        builds.add(image, started, reused=True)
        return image
    context = Path(tempfile.mkdtemp(prefix="oriserver-base-"))
    try:
        (context / "Containerfile").write_bytes(recipe)
        for name, data in files.items():
            (context / name).write_bytes(data)
            (context / name).chmod(0o755 if name.endswith(".sh") else 0o644)
        container_engine.run(
            "build", "--file", str(context / "Containerfile"), "--tag", image,
            "--label", f"{KEY_LABEL}={key}", "--build-arg", f"DEBIAN_IMAGE={DEBIAN_IMAGE}",
            str(context), timeout=600,
        )  # fmt: skip
    finally:
        shutil.rmtree(context, ignore_errors=True)
    builds.add(image, started, reused=False)
    return image


def python_base(container_engine: Engine, builds: Builds) -> str:
    files = {
        "host-ca-bundle.crt": host_ca_bundle().read_bytes(),
        "pip.conf": host_pip_conf().encode(),
    }
    return _build_base(container_engine, builds, PYTHON_IMAGE, "python.Containerfile", files)


def postgres_base(container_engine: Engine, builds: Builds) -> str:
    files = {"postgres-entrypoint.sh": (BASE / "postgres-entrypoint.sh").read_bytes()}
    return _build_base(container_engine, builds, POSTGRES_IMAGE, "postgres.Containerfile", files)


def project_image(
    container_engine: Engine,
    builds: Builds,
    tag: str,
    dockerfile: Path,
    context: Path = ROOT,
) -> str:
    """`build` of one of the project's Dockerfiles as it is, on the substitute Python base.

    The engine's layer cache makes a rebuild without changes take seconds. podman writes
    HEALTHCHECK only into Docker-format images, hence --format docker.
    """
    started = time.monotonic()
    format_flag = ["--format", "docker"] if container_engine.is_podman else []
    container_engine.run(
        "build", *format_flag, "--file", str(dockerfile), "--tag", tag,
        "--build-arg", f"PYTHON_IMAGE={PYTHON_IMAGE}", str(context), timeout=900,
    )  # fmt: skip
    builds.add(tag, started, reused=False)
    return tag


def image_size(container_engine: Engine, image: str) -> int:
    return int(container_engine.inspect(image, "{{.Size}}", what="image"))
