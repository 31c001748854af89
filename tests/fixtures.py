"""Fixtures shared by every Django-side test: API clients with keys, and real Celery processes."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from pytest_django import Settings
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import apikey_create

from .helpers import ROOT, TEST_WEBHOOK_SECRET, django_env, python, wait_until


@pytest.fixture
def api_key(db: None) -> tuple[ApiKey, str]:
    return apikey_create(name="test key")


@pytest.fixture
def staff_key(db: None) -> tuple[ApiKey, str]:
    return apikey_create(name="staff key", is_staff=True)


@pytest.fixture
def client_for() -> Iterator[object]:
    def make(raw_key: str | None) -> APIClient:
        client = APIClient()
        if raw_key is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    yield make


@pytest.fixture
def api_client(api_key: tuple[ApiKey, str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key[1]}")
    return client


@pytest.fixture
def staff_client(staff_key: tuple[ApiKey, str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {staff_key[1]}")
    return client


def shared_database_url() -> str:
    """The URL of the database pytest-django created, for subprocesses that must share it."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_worker(
    *,
    name: str,
    log: Path | None,
    broker_url: str | None = None,
    queues: str = "high,default,low",
    concurrency: int = 1,
    loglevel: str = "INFO",
    env: dict[str, str] | None = None,
    supervised: bool = False,
) -> subprocess.Popen[bytes]:
    """A real Celery worker process of a test's own, on the test database (``broker_url``: a private broker,
    so no other worker takes its tasks), its output appended to ``log`` (None: the test's own output); ``env``
    adds to its environment; ``supervised``: under ``spignosapi.supervise``, as ``make run`` runs it (started
    again if it exits; the process returned is the supervisor's).
    It leads a process group of its own: ``stop_group`` stops its pool processes with it."""
    out = log.open("ab") if log is not None else None
    supervisor = [python(), "-m", "spignosapi.supervise", "worker", "--"] if supervised else []
    try:
        return subprocess.Popen(
            [
                *supervisor,
                python(),
                "-m",
                "celery",
                "-A",
                "spignosapi",
                "worker",
                "--queues",
                queues,
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                loglevel,
            ],
            cwd=ROOT,
            env=django_env(
                **{
                    "DATABASE_URL": shared_database_url(),
                    "SNAPSHOT_CHECK_SECONDS": "0",
                    "USAGE_FLUSH_SECONDS": "0.05",
                    "LOG_LEVEL": loglevel,
                    **({"CELERY_BROKER_URL": broker_url} if broker_url else {}),
                    **(env or {}),
                }
            ),
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()  # the worker holds its own descriptor


def start_beat(*, log: Path | None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A real beat process (its configured scheduler: the database's) on the test database unless ``env``
    names another; its output appended to ``log``. A process group of its own, like a worker's."""
    out = log.open("ab") if log is not None else None
    try:
        return subprocess.Popen(
            [python(), "-m", "celery", "-A", "spignosapi", "beat", "--loglevel", "INFO", "--pidfile", ""],
            cwd=ROOT,
            env=django_env(**{"DATABASE_URL": shared_database_url(), **(env or {})}),
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process and its group (a worker's pool), SIGKILL if they are not gone in 15 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_idle_workers(timeout: float = 60.0) -> bool:
    """True once the broker's queues are empty and no worker runs, holds or schedules a task: what a test
    queued has ended. A test that queues work must wait for it before its tables are emptied (a TRUNCATE
    meeting a worker's transaction deadlocked in CI)."""
    from spignosapi.celery import app

    def idle() -> bool:
        inspect = app.control.inspect(timeout=0.5)
        for held in (inspect.active(), inspect.reserved(), inspect.scheduled()):
            if any(held.values() if held else ()):
                return False
        with app.connection_for_read() as conn:
            return all(queued(conn.default_channel, q) == 0 for q in QUEUES)

    return wait_until(idle, timeout=timeout, interval=0.2)


QUEUES = ("high", "default", "low")


def queued(channel: Any, queue: str) -> int:
    """Messages waiting in ``queue`` (Redis keeps no empty queue: "not found" is none)."""
    from amqp.exceptions import ChannelError

    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except ChannelError:
        return 0


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: None, django_db_blocker: object) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on the test database and Redis, consuming high, default and low."""
    from spignosapi.celery import app

    proc = subprocess.Popen(
        [
            python(),
            "-m",
            "celery",
            "-A",
            "spignosapi",
            "worker",
            "--queues",
            "high,default,low",
            "--concurrency",
            "2",
            "--hostname",
            "test-worker@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=django_env(
            DATABASE_URL=shared_database_url(),
            BEAT_HEARTBEAT_SECONDS="1",
            SNAPSHOT_CHECK_SECONDS="0",
            USAGE_FLUSH_SECONDS="0.05",
            WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
        ),
    )
    try:
        assert wait_until(lambda: bool(app.control.ping(timeout=0.5)), timeout=60), "worker did not start"
        yield proc
    finally:
        _stop(proc)


@pytest.fixture
def celery_beat(celery_worker: subprocess.Popen[bytes], tmp_path: object) -> Iterator[subprocess.Popen[bytes]]:
    """A real beat process (database scheduler) sending its heartbeat every second."""
    proc = subprocess.Popen(
        [python(), "-m", "celery", "-A", "spignosapi", "beat", "--loglevel", "WARNING", "--pidfile", ""],
        cwd=ROOT,
        env=django_env(DATABASE_URL=shared_database_url(), BEAT_HEARTBEAT_SECONDS="1"),
    )
    try:
        yield proc
    finally:
        _stop(proc)


# --- the gateway over real HTTP ------------------------------------------------------------------------


class Fake:
    """The fake upstream (llm.fake_upstream) in a thread of the test process, with its control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str, body: object | None = None) -> object:
        import json
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def configure(self, **models: dict[str, Any]) -> None:
        self._call("POST", "/_fake/models", models)

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})

    def stats(self) -> dict[str, object]:
        result = self._call("GET", "/_fake/stats")
        assert isinstance(result, dict)
        return result


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[Fake]:
    from llm.fake_upstream import start_in_thread

    url, stop = start_in_thread()
    try:
        yield Fake(url)
    finally:
        stop()


@pytest.fixture
def fake(fake_upstream_server: Fake) -> Fake:
    fake_upstream_server.reset()
    return fake_upstream_server


def _flush_test_redis() -> None:
    import redis
    from django.conf import settings as dj

    for url in {dj.REDIS_CACHE_URL, dj.REDIS_CHANNELS_URL}:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()


class Gateway:
    """A running platform web server (uvicorn, ASGI) on loopback, and the URL to reach it."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.proc = proc
        self.log: Path | None = None


def start_gateway(extra_env: dict[str, str] | None = None, *, log: Path | None = None, workers: int = 1) -> Gateway:
    """A uvicorn server on the test database; ``log`` captures its stdout and stderr in a file; ``workers``
    > 1 runs that many server processes on the one port (as the Dockerfile does)."""
    from .helpers import free_port

    port = free_port()
    env = django_env(
        **{
            "DATABASE_URL": shared_database_url(),
            "USAGE_FLUSH_SECONDS": "0.05",
            # Tests change keys and routing between requests: every request looks at the versions.
            "SNAPSHOT_CHECK_SECONDS": "0",
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
    )
    log_file = log.open("ab") if log is not None else None
    proc = subprocess.Popen(
        [
            python(),
            "-m",
            "uvicorn",
            "spignosapi.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
            *(["--workers", str(workers)] if workers > 1 else []),
        ],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT if log_file is not None else None,
    )
    if log_file is not None:
        log_file.close()  # the server holds its own descriptor
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    if not wait_until(up, timeout=60):
        _stop(proc)
        raise AssertionError("the gateway server did not start")
    return Gateway(url, proc)


@pytest.fixture(scope="session")
def gateway_server(django_db_setup: None) -> Iterator[Gateway]:
    server = start_gateway()
    try:
        yield server
    finally:
        _stop(server.proc)


@pytest.fixture
def seeded(transactional_db: None, fake: Fake, settings: Settings) -> Fake:
    """Defaults seeded with the demo provider pointing at the fake upstream; Redis state cleared."""
    from routing.seed import seed_defaults

    _flush_test_redis()
    settings.DEMO_UPSTREAM_URL = fake.url + "/v1"
    seed_defaults()
    return fake


@pytest.fixture
def gateway(gateway_server: Gateway, seeded: Fake) -> Gateway:
    return gateway_server


@pytest.fixture(scope="module")
def logged_gateway_server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway server of the test module's own, its output (warnings and up) kept in ``server.log``."""
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    server = start_gateway({"LOG_LEVEL": "WARNING"}, log=log)
    server.log = log
    try:
        yield server
    finally:
        _stop(server.proc)


@pytest.fixture
def logged_gateway(logged_gateway_server: Gateway, seeded: Fake) -> Iterator[Gateway]:
    """``gateway``, from a server of the module's own whose log must hold no error once the test is done:
    bad input and failing upstreams are answered, never logged as an error (nor with a traceback)."""
    log = logged_gateway_server.log
    assert log is not None
    start = log.stat().st_size if log.exists() else 0
    yield logged_gateway_server
    with log.open("rb") as file:
        file.seek(start)
        written = file.read().decode(errors="replace")
    errors = [line for line in written.splitlines() if _is_error(line)]
    assert errors == [], written


def _is_error(line: str) -> bool:
    # Django logs every 5xx answer at ERROR; an upstream or dependency failing is answered, not a bug.
    answered = ("Bad Gateway:", "Service Unavailable:", "Gateway Timeout:")
    if " ERROR django.request " in line and any(status in line for status in answered):
        return False
    # The platform's log format ("… ERROR logger …"), and uvicorn's own ("ERROR:    …").
    return " ERROR " in line or " CRITICAL " in line or line.startswith(("ERROR:", "CRITICAL:")) or "Traceback" in line


# --- headless Chromium -----------------------------------------------------------------------------------

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (Playwright's own browser download is not used)."""
    import shutil

    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the tests' ORM calls are still
    # plain synchronous code, which Django allows once told so (Playwright's documented Django setup).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "chromium is not installed (make test installs it with apt-get)"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def logged_in_page(browser: Any, gateway: Gateway) -> Iterator[Any]:
    """A browser page logged in to the admin (and so the dashboard pages) as a fresh staff user."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("browser-admin", "", "browser-password-123")
    context = browser.new_context()
    page = context.new_page()
    page.goto(gateway.url + "/admin/login/")
    page.fill("#id_username", "browser-admin")
    page.fill("#id_password", "browser-password-123")
    page.click("input[type=submit]")
    page.wait_for_url(gateway.url + "/admin/")
    try:
        yield page
    finally:
        context.close()
