"""A throwaway PostgreSQL server on a free loopback port: for the tests, benchmarks and demos.

Debian's PostgreSQL (``apt-get install postgresql``, done by ``scripts/bootstrap.sh``) is
used as installed, but never its packaged cluster or service: :class:`Postgres` runs
``initdb`` into a folder of its own, starts the server with ``pg_ctl`` on 127.0.0.1 and a
free port (its Unix socket in the same folder), and removes everything on :meth:`stop`.

PostgreSQL refuses to run as root, so as root the folder is given to the ``postgres`` user
(which the package creates) and the server commands run as that user.

``durable=False`` (the tests' default) turns off ``fsync`` and ``full_page_writes``: a test
asserts what was committed, never survival of a power cut, and the suite is faster for it.
Benchmarks pass ``durable=True`` so that a commit costs what it costs in production.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from provisioning.localbroker import free_port

PG_ROOT = Path(os.environ.get("PG_ROOT", "/usr/lib/postgresql"))


class PostgresError(RuntimeError):
    """The server could not be set up or started; the message says why (with its log)."""


def server_bin() -> Path:
    """The newest installed PostgreSQL's ``bin`` folder.

    Raises:
        PostgresError: no PostgreSQL server is installed.
    """
    found = sorted((p for p in PG_ROOT.glob("*/bin") if (p / "pg_ctl").exists()),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not found:
        raise PostgresError(f"no PostgreSQL server under {PG_ROOT} (apt-get install postgresql;"
                            " scripts/bootstrap.sh does it)")
    return found[-1]


class Postgres:
    """One PostgreSQL server in its own folder; ``start``, ``admin_url``, ``stop``."""

    def __init__(self, port: int | None = None, durable: bool = False,
                 max_connections: int = 200) -> None:
        """Prepare a server (nothing runs until :meth:`start`)."""
        self.bin = server_bin()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.durable = durable
        self.max_connections = max_connections
        # Not under pytest's tmp_path: that is mode 0700 and root's, so the postgres user
        # could not reach a data folder inside it.
        self.root = Path(tempfile.mkdtemp(prefix="store-edge-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._demote = self._as_postgres_user() if os.geteuid() == 0 else None

    @property
    def admin_url(self) -> str:
        """The URL of the ``postgres`` database as the superuser (trust auth on loopback)."""
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def start(self, timeout_s: int = 60) -> None:
        """initdb, then start and wait until the server accepts connections.

        Raises:
            PostgresError: initdb or the server failed (the message carries the log's tail).
        """
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], "initdb")
        overrides = [
            f"listen_addresses = '{self.host}'", f"port = {self.port}",
            f"unix_socket_directories = '{self.root}'",
            f"max_connections = {self.max_connections}", "shared_buffers = 64MB",
        ]
        if not self.durable:
            overrides += ["fsync = off", "full_page_writes = off", "synchronous_commit = off"]
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as f:
            f.write("\n# store-edge local server\n" + "\n".join(overrides) + "\n")
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                   "-t", str(timeout_s), "start"], "pg_ctl start")

    def fresh_database(self) -> str:
        """A new empty database on this server; its URL."""
        return fresh_database(self.admin_url)

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``) and remove its folder."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresError):
                self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                           "-w", "stop"], "pg_ctl stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _as_postgres_user(self) -> Callable[[], None]:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresError("running as root needs the 'postgres' user (the postgresql"
                                " package creates it)") from None
        os.chown(self.root, pw.pw_uid, pw.pw_gid)

        def demote() -> None:
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)

        return demote

    def _run(self, cmd: list[str], what: str) -> None:
        res = subprocess.run(cmd, preexec_fn=self._demote, capture_output=True, text=True,
                             timeout=120, check=False, cwd=self.root)
        if res.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresError(f"{what} failed ({res.returncode}): {res.stderr.strip()[-2000:]}"
                                f"{chr(10) + tail if tail else ''}")


def fresh_database(admin_url: str) -> str:
    """Create a new empty database on the server at ``admin_url``; its URL.

    Needs psycopg (the ``hq-postgres`` extra).
    """
    import psycopg

    name = f"hq_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name
