"""A real PostgreSQL server for the tests and the benchmark: Debian's `postgresql` binaries,
`initdb` in a temporary folder, `pg_ctl` on a free port (TCP on 127.0.0.1 and a unix
socket in that folder), password authentication over TCP, stopped and removed after.

PostgreSQL refuses to run as root: as root (CI) every server command runs as the
`postgres` system user (made when missing), who owns the folder.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Sequence

from crypto_pipeline.core.processes import free_port

SERVER_USER = "postgres"
SUPERUSER = "pipeline"
PASSWORD = "s3cret-pw"
# Debian installs the server's programs here, not on PATH.
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# Small and quick for a shared machine; a benchmark asks for durable writes.
TEST_OPTIONS = ("-c", "shared_buffers=32MB", "-c", "max_connections=40")
# Without flushes to disk: only an operating system crash could lose data. Commits stay
# synchronous: a server crash (stop("immediate")) must not lose a committed batch, as
# the job relies on (asynchronous commits lose the last ones).
NOT_DURABLE = ("-c", "fsync=off", "-c", "full_page_writes=off")


def bin_dir() -> Path | None:
    """The folder of initdb and pg_ctl: PATH's, else the newest Debian one."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")),
                        key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0))
    candidates = [path for path in candidates if (path / "initdb").is_file()]
    return candidates[-1] if candidates else None


def missing_reason() -> str | None:
    """Why no server can be started here, or None."""
    if bin_dir() is None:
        return ("PostgreSQL not found (no initdb on PATH or in /usr/lib/postgresql/*/bin): "
                "apt-get install postgresql")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start PostgreSQL as another user"
    return None


def _server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", SERVER_USER], check=True)
        return pwd.getpwnam(SERVER_USER)


class PostgresServer:
    def __init__(self, *, durable: bool = False):
        self.bin = bin_dir()
        if self.bin is None:
            raise RuntimeError(missing_reason())
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="crypto-pg-"))
        self.data = self.root / "data"
        self.log_file = self.root / "server.log"
        self.durable = durable
        self._as_root = os.geteuid() == 0
        if self._as_root:
            user = _server_user()
            os.chown(self.root, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o755)
        self._initdb()

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin / program), *args]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): "
                               f"{result.stderr.strip() or result.stdout.strip()}\n"
                               f"{self.log_tail()}")
        return result

    def _initdb(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(PASSWORD + "\n")
        if self._as_root:
            user = _server_user()
            os.chown(password_file, user.pw_uid, user.pw_gid)
        try:
            self._run("initdb", "-D", str(self.data), "-U", SUPERUSER,
                      f"--pwfile={password_file}", "--auth-host=scram-sha-256",
                      "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        finally:
            password_file.unlink()

    def start(self) -> "PostgresServer":
        options: Sequence[str] = (
            "-p", str(self.port), "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
            *TEST_OPTIONS, *(() if self.durable else NOT_DURABLE))
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-w", "-t", "60",
                  "-o", " ".join(options), "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects everyone and stops cleanly; `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        return subprocess.run(command, capture_output=True).returncode == 0

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def admin(self, statement: str) -> None:
        """Run one statement as the superuser, outside a transaction."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(statement)

    def log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Stop the server if it runs, and remove its folder."""
        try:
            if self.data.exists() and self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
