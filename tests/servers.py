"""Database and Redis servers a test owns, to stop and start them as an outage would (never the shared ones)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import redis

from .helpers import free_port, redis_server_binary, wait_until


class RedisServer:
    """A redis-server on a free loopback port, persisting with an append-only file as docker-compose's does:
    killed and started again on the same port and directory, it comes back with its data (queued tasks)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
                *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        try:
            assert wait_until(lambda: _pings(client), timeout=20), "redis did not start"
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last save; what the append-only file holds is what comes back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    assert found[-1], f"PostgreSQL's {name} is not installed"
    return found[-1]


class PostgresCluster:
    """A PostgreSQL cluster of the test's own (initdb in a temporary directory, a free port, trust auth).
    As root, its programs run as the ``postgres`` user (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        # Its own directory under the system's temporary one: the postgres user must reach it, and pytest's
        # temporary directories are private to the user running the tests.
        self.directory = Path(tempfile.mkdtemp(prefix="spignosapi-pg-")) / "pgdata"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/spignosapi"
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *command: str) -> None:
        subprocess.run([*self._as_postgres, *command], check=True, capture_output=True)

    def init(self) -> None:
        self.directory.mkdir()
        if self._as_postgres:
            shutil.chown(self.directory.parent, "postgres", "postgres")
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(postgres_bin("initdb"), "-D", str(self.directory), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        self._run(postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "spignosapi")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off"
        log = str(self.directory / "server.log")
        self._run(
            postgres_bin("pg_ctl"), "-D", str(self.directory), "-o", options, "-l", log, "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        """A fast shutdown: every client's connection is cut, as when the server goes down."""
        self._run(postgres_bin("pg_ctl"), "-D", str(self.directory), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        pid_file = self.directory / "postmaster.pid"
        if pid_file.exists():
            try:
                self._run(postgres_bin("pg_ctl"), "-D", str(self.directory), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.directory.parent, ignore_errors=True)
