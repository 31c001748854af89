"""Budgets are exact across processes: four web processes (two uvicorn servers of two workers each) on real
PostgreSQL and a Redis this module owns, hit by concurrent requests from aiohttp.

A budget covering N calls at their most (the prompt and ``max_tokens`` at the model's prices, energy
coefficient and grid intensity) admits N, whatever the concurrency; every other call is a 429
``budget_exceeded``; each counter matches the sum of the usage rows; Redis restarted mid-period, the spent
figure is rebuilt from the ledger and nothing is counted twice; a stream its client stops, a failed call and
a cancelled job each give their reservation back (or charge it) exactly once.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from django.core.cache import caches
from pytest_django import Settings

from accounts.models import ApiKey, Team
from accounts.services import apikey_create
from budgets.counters import Spend
from budgets.models import Budget
from ledger.accounting import account
from ledger.models import UsageRecord
from llm import count_message_tokens
from routing.models import LLMModel
from routing.selectors import routing_config
from spignosapi import snapshots
from tests.fixtures import Fake, Gateway, _stop, start_gateway
from tests.helpers import free_port, redis_server_binary, wait_until
from tests.http import call

pytestmark = [pytest.mark.django_db(transaction=True)]

MODEL = "demo/demo-fast"
PROMPT = "Say something short"
MAX_TOKENS = 4  # the fake upstream answers 16 tokens, capped by max_tokens: every call costs its most
MESSAGES = [{"role": "user", "content": PROMPT}]


class OwnRedis:
    """A redis-server on a fixed loopback port, which a test may restart (its data is then gone)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/8"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        proc = subprocess.Popen([*args, "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(lambda: self._up(), timeout=20), "redis did not start"
        return proc

    def _up(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url).ping())
        except redis.RedisError:
            return False

    def restart(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc = self._start()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def cluster(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OwnRedis, list[Gateway]]]:
    logs = tmp_path_factory.mktemp("budgets")
    redis = OwnRedis()
    env = {
        "REDIS_URL": redis.url,
        "CELERY_BROKER_URL": redis.url.rsplit("/", 1)[0] + "/3",  # no worker listens: jobs stay queued
        "BUDGET_LEDGER_CATCHUP_SECONDS": "0.5",
        "RATELIMIT_ENABLE": "true",
    }
    servers: list[Gateway] = []
    try:
        for name in ("a", "b"):
            servers.append(start_gateway(env, log=logs / f"{name}.log", workers=2))
        yield redis, servers
    finally:
        for server in servers:
            _stop(server.proc)
        redis.stop()


def changed_everywhere(redis: OwnRedis, settings: Settings) -> None:
    """The servers look for changes in their Redis, not the tests' one: bump every snapshot's version there."""
    settings.CACHES = {**settings.CACHES, "default": {**settings.CACHES["default"], "LOCATION": redis.url}}
    theirs = caches.create_connection("default")
    for name in ("apikeys", "routing", "budgets", *snapshots.registry):
        theirs.set(f"snapshot:{name}:version", uuid.uuid4().hex, timeout=None)


@pytest.fixture
def platform(
    cluster: tuple[OwnRedis, list[Gateway]], seeded: Fake, settings: Settings
) -> tuple[OwnRedis, list[Gateway], Spend]:
    """Seeded routes with a model whose every call costs a visible amount; what a call costs at most."""
    redis, servers = cluster
    LLMModel.objects.filter(provider__name="demo", name__in=["demo-fast", "demo-embed"]).update(
        price_in_per_m=Decimal(1000), price_out_per_m=Decimal(3000), energy_kwh_per_m=2.0
    )
    routing_config.invalidate()
    info = routing_config.get(recheck=True).models[MODEL]
    cost = account(info, count_message_tokens(MESSAGES), MAX_TOKENS)
    import redis as redis_py

    redis_py.Redis.from_url(redis.url).flushall()
    changed_everywhere(redis, settings)
    return redis, servers, Spend(cost.cost_usd, cost.energy_wh, cost.co2e_g)


def new_key(name: str, team: Team | None = None) -> tuple[ApiKey, str]:
    return apikey_create(name=name, rpm_limit=100_000, tpm_limit=10**9, team=team)


def budget(metric: str, limit_micro: int, **owner: Any) -> Budget:
    scope = "team" if "team" in owner else "key"
    return Budget.objects.create(scope=scope, metric=metric, period="day", limit=Decimal(limit_micro) / 10**6, **owner)


async def _burst(urls: list[str], keys: list[str], n: int, body: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n)) as session:

        async def one(i: int) -> tuple[int, dict[str, Any]]:
            headers = {"Authorization": f"Bearer {keys[i % len(keys)]}"}
            async with session.post(urls[i % len(urls)] + "/api/v1/generate", json=body, headers=headers) as reply:
                return reply.status, await reply.json()

        return await asyncio.gather(*(one(i) for i in range(n)))


def burst(servers: list[Gateway], keys: list[str], n: int) -> list[tuple[int, dict[str, Any]]]:
    body = {"prompt": PROMPT, "model": MODEL, "max_tokens": MAX_TOKENS}
    return asyncio.run(_burst([s.url for s in servers], keys, n, body))


def ledger_micro(metric: str, **scope: Any) -> int:
    """The usage rows' sum, in millionths, each row rounded as a call's settle rounds it."""
    rows = UsageRecord.objects.filter(**scope)
    return sum(Spend(r.cost_usd, r.energy_wh, r.co2e_g).micro(metric) for r in rows)


def current(server: Gateway, staff: str, budget_id: int) -> dict[str, Any]:
    reply = call("GET", server.url + "/api/v1/budgets", key=staff)
    assert reply.status == 200, reply.text
    [row] = [b for b in reply.json()["budgets"] if b["id"] == budget_id]
    return dict(row["current"])


def micro(value: float) -> int:
    return round(value * 10**6)


def settled(server: Gateway, staff: str, budget_id: int, metric: str, **scope: Any) -> dict[str, Any]:
    """The budget's figures once every call is booked and every row written (the servers flush every 50 ms)."""
    state: dict[str, Any] = {}

    def done() -> bool:
        state.update(current(server, staff, budget_id))
        return state["reserved"] == 0 and micro(state["spent"]) == ledger_micro(metric, **scope)

    wait_until(done, timeout=20)
    return state


def test_200_concurrent_calls_never_overspend_a_key_budget(platform: tuple[OwnRedis, list[Gateway], Spend]) -> None:
    _, servers, most = platform
    key, raw = new_key("budgeted")
    _, staff = apikey_create(name="staff", is_staff=True)
    limit = 20 * most.micro("usd")
    row = budget("usd", limit, api_key=key)

    results = burst(servers, [raw], 200)

    ok = [body for status, body in results if status == 200]
    refused = [body for status, body in results if status != 200]
    assert len(ok) == 20  # each call costs its most: the budget covers exactly 20
    assert {(status, body["error"]["type"], body["error"]["code"]) for status, body in results if status != 200} == {
        (429, "insufficient_quota", "budget_exceeded")
    }
    assert len(refused) == 180
    state = settled(servers[0], staff, row.pk, "usd", api_key=key)
    assert micro(state["spent"]) == ledger_micro("usd", api_key=key) == 20 * most.micro("usd") <= limit
    assert state["remaining"] == 0


def test_a_team_energy_budget_holds_across_two_keys(platform: tuple[OwnRedis, list[Gateway], Spend]) -> None:
    _, servers, most = platform
    team = Team.objects.create(name="shared")
    (first, raw1), (second, raw2) = new_key("one", team), new_key("two", team)
    _, staff = apikey_create(name="staff", is_staff=True)
    limit = 12 * most.micro("wh")
    row = budget("wh", limit, team=team)

    assert burst(servers[:1], [raw1], 1)[0][0] == 200  # the first key spends a twelfth
    results = burst(servers, [raw2, raw2, raw1, raw1], 120)

    assert sum(1 for status, _ in results if status == 200) == 11  # the rest, shared by the two keys
    assert {body["error"]["code"] for status, body in results if status != 200} == {"budget_exceeded"}
    state = settled(servers[1], staff, row.pk, "wh", api_key__team=team)
    assert micro(state["spent"]) == ledger_micro("wh", api_key__team=team) == 12 * most.micro("wh")
    assert UsageRecord.objects.filter(api_key=first, status="ok").exists()
    assert UsageRecord.objects.filter(api_key__in=[first, second], status="ok").count() == 12


def test_a_redis_restart_mid_period_rebuilds_the_spent_figure_from_the_ledger(
    platform: tuple[OwnRedis, list[Gateway], Spend],
) -> None:
    redis, servers, most = platform
    key, raw = new_key("restarted")
    _, staff = apikey_create(name="staff", is_staff=True)
    limit = 15 * most.micro("usd")
    row = budget("usd", limit, api_key=key)
    assert sum(1 for status, _ in burst(servers, [raw], 6) if status == 200) == 6
    before = settled(servers[0], staff, row.pk, "usd", api_key=key)
    assert micro(before["spent"]) == 6 * most.micro("usd")

    redis.restart()  # every counter is gone; the ledger has the six calls
    # Each process finds its connection dead once (and lets that request through, failing open): calls of
    # a key without a budget take those first failures.
    _, other = new_key("warm-up")
    assert {status for status, _ in burst(servers, [other], 24)} == {200}

    results = burst(servers, [raw], 60)
    assert sum(1 for status, _ in results if status == 200) == 9  # 15 - 6: nothing counted twice, nor lost
    assert {body["error"]["code"] for status, body in results if status != 200} == {"budget_exceeded"}
    time.sleep(0.6)  # past the catch-up
    state = settled(servers[1], staff, row.pk, "usd", api_key=key)
    assert micro(state["spent"]) == ledger_micro("usd", api_key=key) == 15 * most.micro("usd")


async def _stop_after_first_chunk(url: str, raw: str) -> None:
    body = {"prompt": PROMPT, "model": MODEL, "max_tokens": 40, "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/api/v1/generate", json=body, headers={"Authorization": f"Bearer {raw}"}) as reply,
    ):
        assert reply.status == 200
        await reply.content.readline()  # the first event, then the client goes


def test_a_stopped_stream_a_failed_call_and_a_cancelled_job_settle_once(
    platform: tuple[OwnRedis, list[Gateway], Spend], fake: Fake
) -> None:
    _, servers, most = platform
    key, raw = new_key("settles")
    _, staff = apikey_create(name="staff", is_staff=True)
    row = budget("usd", 1000 * most.micro("usd"), api_key=key)
    server = servers[0]

    fake.configure(**{"demo-fast": {"tps": 10}})  # slow enough to be stopped midway
    asyncio.run(_stop_after_first_chunk(server.url, raw))
    assert wait_until(lambda: UsageRecord.objects.filter(api_key=key, status="cancelled").exists(), timeout=20)
    state = settled(server, staff, row.pk, "usd", api_key=key)
    stopped = UsageRecord.objects.get(api_key=key)
    assert stopped.completion_tokens < 40 and micro(state["spent"]) == Spend(stopped.cost_usd).micro("usd") > 0

    fake.configure(**{"demo-fast": {"status": 400}})  # the model refuses: no fallback, nothing generated
    failed = call("POST", server.url + "/api/v1/generate", {"prompt": PROMPT, "model": MODEL, "max_tokens": 4}, key=raw)
    assert failed.status == 400
    assert wait_until(lambda: UsageRecord.objects.filter(api_key=key, status="error").count() == 1, timeout=20)
    state = settled(server, staff, row.pk, "usd", api_key=key)
    assert micro(state["spent"]) == Spend(stopped.cost_usd).micro("usd")  # released, nothing charged

    body = {"prompt": PROMPT, "model": MODEL, "max_tokens": MAX_TOKENS}
    submitted = call("POST", server.url + "/api/v1/generate/async", body, key=raw)
    assert submitted.status == 202, submitted.text
    held = current(server, staff, row.pk)
    assert micro(held["reserved"]) == most.micro("usd")  # reserved at submission
    job_url = server.url + f"/api/v1/jobs/{submitted.json()['job_id']}"
    assert call("DELETE", job_url, key=raw).status == 200
    assert call("DELETE", job_url, key=raw).status == 200  # again: nothing more to give back
    after = current(server, staff, row.pk)
    assert (after["spent"], after["reserved"]) == (held["spent"], 0)


DOORS = [
    ("/api/v1/generate", {"prompt": PROMPT, "model": MODEL, "max_tokens": 4}),
    ("/api/v1/generate", {"prompt": PROMPT, "model": MODEL, "max_tokens": 4, "stream": True}),
    ("/api/v1/generate/async", {"prompt": PROMPT, "model": MODEL, "max_tokens": 4}),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "max_tokens": 4}),
    ("/v1/responses", {"model": MODEL, "input": PROMPT, "max_output_tokens": 16}),
    ("/v1/embeddings", {"model": "demo/demo-embed", "input": PROMPT}),
    ("/api/v1/embeddings", {"model": "demo/demo-embed", "input": [PROMPT]}),
]


def test_every_door_refuses_a_spent_budget_in_its_own_envelope(platform: tuple[OwnRedis, list[Gateway], Spend]) -> None:
    _, servers, _ = platform
    key, raw = new_key("door")
    budget("usd", 1, api_key=key)  # a millionth of a dollar: no call fits
    url = servers[1].url
    for path, body in DOORS:
        reply = call("POST", url + path, body, key=raw)
        assert reply.status == 429, (path, reply.text)
        error = reply.json()["error"]
        assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded"), path
        assert "the key's budget of 0.000001 USD per day" in error["message"]
        assert 1 <= int(reply.headers["retry-after"]) <= 86_400

    messages = {"model": MODEL, "max_tokens": 4, "messages": MESSAGES}
    reply = call("POST", url + "/v1/messages", messages, headers={"x-api-key": raw, "anthropic-version": "2023-06-01"})
    assert reply.status == 429
    body = reply.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "the key's budget of 0.000001 USD per day" in body["error"]["message"]
    time.sleep(0.2)  # anything booked would be written by now (the servers flush every 50 ms)
    assert not UsageRecord.objects.filter(api_key=key).exists()  # refused before any call
