"""Throwaway PostgreSQL servers from the machine's own binaries: a primary, and
streaming standbys cloned from it with pg_basebackup, that a test can stop, start
and promote, as an operator (or CloudNativePG) does in a failover.

pgserver (harness/postgres.py) runs one server and cannot make a standby, so
this drives initdb, pg_ctl and pg_basebackup directly. PostgreSQL refuses to run as
root; under root the commands run as the `postgres` user (runuser), with the data
in a directory of its own under the system's temporary directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg


def server_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin holding postgres, initdb, pg_ctl and
    pg_basebackup (or pgserver's own), or None; None too under root without a
    `postgres` user to run them as."""
    needed = ("postgres", "initdb", "pg_ctl", "pg_basebackup")
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    with contextlib.suppress(ImportError):
        import pgserver

        candidates.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin"))
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None  # PostgreSQL will not run as root, and there is no one else to be
    for folder in map(Path, candidates):
        if all((folder / name).is_file() for name in needed):
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Instance:
    """One PostgreSQL server on 127.0.0.1, trusting local connections (tests only)."""

    bin: Path
    data: Path
    port: int = field(default_factory=_free_port)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}")

    def start(self) -> None:
        # No Unix socket: a test's directory can exceed its path limit.
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories="
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "log"), "-o", options,
                 "-w", "-t", "30", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no checkpoint, no goodbye to the clients."""
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def promote(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "promote")

    def replicate_synchronously(self) -> None:
        """From now on a commit returns only once a standby has it (any one standby, like
        CloudNativePG's synchronous `method: any, number: 1`). Set once a standby is
        attached: before that every commit would wait."""
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (*)'")
            connection.execute("SELECT pg_reload_conf()")

    def log(self) -> str:
        path = self.data / "log"
        return path.read_text(errors="replace") if path.exists() else ""


class Cluster:
    """A primary and any number of standbys under one temporary directory."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ori-pgcluster-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.instances: list[Instance] = []

    def primary(self) -> Instance:
        """A new primary, replicating asynchronously until told otherwise."""
        instance = Instance(self.bin, self.root / "primary")
        instance.run("initdb", "-D", str(instance.data), "-U", "postgres", "--auth=trust",
                     "--no-sync")  # fmt: skip
        settings = ["fsync = off", "wal_level = replica", "max_wal_senders = 5"]
        with (instance.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        self.instances.append(instance)
        instance.start()
        return instance

    def standby_of(self, primary: Instance, name: str = "standby") -> Instance:
        """A streaming standby cloned from the running primary (pg_basebackup -R)."""
        instance = Instance(self.bin, self.root / name)
        instance.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U",
                     "postgres", "-D", str(instance.data), "-X", "stream", "-R",
                     "--no-sync")  # fmt: skip
        self.instances.append(instance)
        instance.start()
        return instance

    def close(self) -> None:
        for instance in self.instances:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                instance.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def pg_cluster(bin_dir: Path) -> Iterator[Cluster]:
    cluster = Cluster(bin_dir)
    try:
        yield cluster
    finally:
        cluster.close()
