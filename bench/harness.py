"""The processes under test: PostgreSQL/Redis checks, the fake upstream, the web server, a Celery worker.

Everything runs as it is deployed (``Dockerfile``, ``Procfile``): uvicorn with N worker processes on
PostgreSQL and Redis, ``PRODUCTION=true``, INFO logging, no access log. Only the benchmark's own
database and Redis databases are written (and the Redis ones flushed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/spignosapi_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
# Variables that would register real providers (and send traffic off this machine) or point elsewhere.
_DROPPED_ENV = (
    "OPENAI_API_KEY",
    "OPENROUTER_API_KEY",
    "ANTHROPIC_API_KEY",
    "OLLAMA_BASE_URL",
    "LLMAAS_API_KEY",
    "CELERY_BROKER_URL",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)


class SetupError(SystemExit):
    """A missing dependency or a process that would not start: exits with a message, not a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(f"make bench: {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def http_json(method: str, url: str, body: object | None = None) -> None:
    import json

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


# --- PostgreSQL and Redis ------------------------------------------------------------------------------


def check_postgres(url: str) -> None:
    """Connect to the server (creating the benchmark's database if needed); a clear error if it is down."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise SetupError(f"BENCH_DATABASE_URL {url!r} names no database")
    try:
        with psycopg.connect(url, connect_timeout=3):
            return
    except psycopg.OperationalError as exc:
        if f'database "{name}" does not exist' not in str(exc):
            raise SetupError(
                f"PostgreSQL is not reachable at {parts.hostname}:{parts.port or 5432} ({str(exc).strip()}).\n"
                "  Start it, or point BENCH_DATABASE_URL at one (e.g. postgres://user@host:5432/spignosapi_bench)."
            ) from None
    maintenance = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))
    try:
        with psycopg.connect(maintenance, connect_timeout=3, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise SetupError(f"cannot create the benchmark database {name!r}: {str(exc).strip()}") from None


def redis_db_urls(url: str) -> list[str]:
    """The four databases the platform uses from ``REDIS_URL`` (cache, results, channels, broker)."""
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    base = int(path) if path.isdigit() else 0
    return [urlunsplit((parts.scheme, parts.netloc, f"/{base + i}", parts.query, "")) for i in range(4)]


def check_and_flush_redis(url: str) -> None:
    import redis

    for db_url in redis_db_urls(url):
        client = redis.Redis.from_url(db_url, socket_connect_timeout=3)
        try:
            client.flushdb()
        except redis.exceptions.ResponseError as exc:
            raise SetupError(f"Redis at {url} refused database {db_url}: {exc}") from None
        except redis.exceptions.RedisError as exc:
            parts = urlsplit(url)
            raise SetupError(
                f"Redis is not reachable at {parts.hostname}:{parts.port or 6379} ({exc}).\n"
                "  Start it (redis-server), or point BENCH_REDIS_URL at one (e.g. redis://host:6379/12)."
            ) from None
        finally:
            client.close()


def redis_cpu_seconds(url: str) -> float:
    """CPU seconds the Redis server has used so far (shared with anyone else using that server)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except (redis.exceptions.RedisError, KeyError):
        return 0.0
    finally:
        client.close()


# --- processes ------------------------------------------------------------------------------------------


def platform_env(*, database_url: str, redis_url: str, upstream_url: str) -> dict[str, str]:
    """The environment of a production deployment, pointed at the benchmark's services."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(
        DJANGO_SETTINGS_MODULE="spignosapi.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PRODUCTION="true",
        DEBUG="false",
        SECRET_KEY="bench-only-not-secret",
        WHITENOISE_USE_FINDERS="false",
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        DEMO_UPSTREAM_URL=upstream_url,
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True if it (and every process it started) ended in time.

        Killing only the parent would leave its processes (uvicorn's workers, Celery's pool) running, with
        their database connections, so whatever outlives it is killed too.
        """
        import psutil

        if self.popen.poll() is not None:
            return True
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            children = []
        self.popen.send_signal(signal.SIGTERM)
        clean = True
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            clean = False
            self.popen.kill()
            self.popen.wait()
        _, alive = psutil.wait_procs(children, timeout=5 if clean else 0)
        for child in alive:
            clean = False
            with contextlib.suppress(psutil.Error):
                child.kill()
        return clean


def start(name: str, args: list[str], env: Mapping[str, str], logs: Path, cpus: set[int] | None = None) -> Proc:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    handle = log.open("wb")

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    popen = subprocess.Popen(
        args, cwd=ROOT, env=dict(env), stdout=handle, stderr=subprocess.STDOUT, preexec_fn=pin if cpus else None
    )
    handle.close()
    return Proc(name, popen, log)


def start_upstream(port: int, env: Mapping[str, str], logs: Path, cpus: set[int] | None) -> Proc:
    proc = start("upstream", [sys.executable, "-m", "llm.fake_upstream", "--port", str(port)], env, logs, cpus)
    if not wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health") or not proc.alive(), 30):
        proc.stop()
        raise SetupError(f"the fake upstream did not start:\n{proc.tail()}")
    if not proc.alive():
        raise SetupError(f"the fake upstream exited:\n{proc.tail()}")
    return proc


def start_web(port: int, workers: int, env: Mapping[str, str], logs: Path, cpus: set[int] | None) -> Proc:
    # As the Dockerfile runs it.
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "spignosapi.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--lifespan",
        "off",
        "--no-access-log",
    ]
    proc = start(f"web-{workers}w", args, env, logs, cpus)
    if not wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health") or not proc.alive(), 60):
        proc.stop()
        raise SetupError(f"the web server did not start:\n{proc.tail()}")
    if not proc.alive():
        raise SetupError(f"the web server exited:\n{proc.tail()}")
    # Every worker process must be up (each answers /health) before anything is measured.
    if workers > 1:
        wait_until(lambda: len(worker_pids(proc)) >= workers, 30)
    return proc


def worker_pids(proc: Proc) -> list[int]:
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=False)
    except psutil.Error:
        return []
    # uvicorn's multiprocess supervisor also starts a resource tracker; its workers run the app.
    return [c.pid for c in children if "resource_tracker" not in " ".join(c.cmdline())]


def start_celery(concurrency: int, env: Mapping[str, str], logs: Path, cpus: set[int] | None) -> Proc:
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "spignosapi",
        "worker",
        "--queues",
        "high,default,low",
        "--concurrency",
        str(concurrency),
        "--hostname",
        f"bench-{concurrency}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "WARNING",
    ]
    return start(f"worker-{concurrency}c", args, env, logs, cpus)


def run_setup(env: Mapping[str, str]) -> str:
    """Migrate, seed, clear old rows and create the key (``bench.setup_db``); returns the raw key."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.setup_db"], cwd=ROOT, env=dict(env), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SetupError(f"preparing the benchmark database failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]
