"""A private PostgreSQL cluster for tests and benches: `initdb` and `pg_ctl` from Debian's package, on a free
loopback port, in a throwaway directory, removed on exit.

PostgreSQL refuses to run as root, and CI runs as root: as root the server runs as the `postgres` user the
Debian package creates (`runuser -u postgres --`), and its directory is handed to that user."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.ports import free_port

SERVER_USER = "postgres"  # made by Debian's postgresql package; the server runs as it when we are root
SUPERUSER_PASSWORD = "cluster-superuser-secret"


def postgres_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: on the PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None



@dataclass(frozen=True)
class PostgresCluster:
    port: int
    directory: Path

    def url(self, database: str, user: str = "postgres", password: str = SUPERUSER_PASSWORD) -> str:
        return f"postgresql://{quote(user)}:{quote(password)}@127.0.0.1:{self.port}/{quote(database)}"


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """Starts a cluster (password authentication over TCP, no fsync: a test's data need not survive a crash)
    and stops it, data and all, on exit."""
    binaries = postgres_binaries()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    directory = Path(tempfile.mkdtemp(prefix="mcp-console-pg-"))
    data = directory / "data"
    password_file = directory / "superuser-password"
    password_file.write_text(SUPERUSER_PASSWORD)
    if os.geteuid() == 0:
        server_user = pwd.getpwnam(SERVER_USER)
        for path in (directory, password_file):
            os.chown(path, server_user.pw_uid, server_user.pw_gid)
    os.chmod(directory, 0o700)
    port = free_port()
    run = {"check": True, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    try:
        subprocess.run(_as_server_user([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--no-sync",
                                        "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                                        f"--pwfile={password_file}", "-E", "UTF8", "--locale=C.UTF-8"]), **run)
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        subprocess.run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"),
                                        "-o", options, "-w", "-t", "30", "start"]), **run)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"the test cluster did not start: {exc.stdout.decode(errors='replace')}") from None
    try:
        yield PostgresCluster(port, directory)
    finally:
        subprocess.run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                        "stop"]), check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(directory, ignore_errors=True)
