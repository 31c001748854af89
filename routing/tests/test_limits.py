"""Limits: per-key RPM, TPM and caps over real HTTP (shared by two server processes), outbound budgets."""

from __future__ import annotations

import json
import time
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from accounts.models import ApiKey
from accounts.selectors import KeyInfo
from accounts.services import apikey_create
from jobs.models import Job
from jobs.streams import buffer_key
from ledger.models import UsageRecord
from llm import count_message_tokens
from routing import quota
from routing.errors import GatewayError
from routing.limits import OutboundBudgets, admit_key_sync, settle_tokens_sync, tpm_counter_name
from routing.models import LLMModel
from routing.services import routing_changed
from spignosapi.api.errors import api_error_for
from spignosapi.fastpath.redis_client import cache_redis
from tests.fixtures import Fake, Gateway, _stop, start_gateway
from tests.helpers import wait_until
from tests.http import Reply, call

pytestmark = pytest.mark.django_db(transaction=True)

HELLO_TOKENS = count_message_tokens([{"role": "user", "content": "hello"}])
CODE_PROMPT = "fix this python function"
CODE_TOKENS = count_message_tokens([{"role": "user", "content": CODE_PROMPT}])


@pytest.fixture(scope="module")
def second_gateway(django_db_setup: None) -> Iterator[Gateway]:
    """Another server process on the same database and Redis."""
    server = start_gateway()
    try:
        yield server
    finally:
        _stop(server.proc)


def generate(url: str, raw: str, prompt: str = "hello", max_tokens: int = 4) -> Reply:
    return call("POST", url + "/api/v1/generate", {"prompt": prompt, "max_tokens": max_tokens}, key=raw)


def seconds_left(window_end_offset: int, now: float) -> float:
    """Seconds until the next time ``t`` with ``t % 60 == window_end_offset``."""
    return (window_end_offset - now) % 60


def fresh_window(window_end_offset: int, needed: float = 5.0) -> None:
    """Wait for a new window when the current one ends within ``needed`` seconds (the server's clock is real)."""
    left = seconds_left(window_end_offset, time.time())
    if left < needed:
        time.sleep(left + 0.2)


def rpm_window_offset(key: ApiKey) -> int:
    # django-ratelimit shifts each key's minute by crc32(key value) % 60 seconds; its window (w - 60, w]
    # counts whole seconds, so it ends one second after w.
    return (zlib.crc32(str(key.pk).encode()) + 1) % 60


def tpm_state(key_id: int, now: float | None = None) -> tuple[int, int]:
    """(spent, reserved) of the key's tokens/minute counter for the minute of ``now``."""
    now = time.time() if now is None else now
    ((spent, reserved),) = quota.state_sync(cache_redis.sync_client(), [tpm_counter_name(key_id, now)], now=now)
    return spent, reserved


def settles_to(key: ApiKey, expected: tuple[int, int]) -> bool:
    """The server settles a request's reservation while it sends the response (not before): wait for it."""
    if wait_until(lambda: tpm_state(key.pk) == expected, timeout=5):
        return True
    print("tokens/minute (spent, reserved):", tpm_state(key.pk))
    return False


def tpm_counter(key: ApiKey) -> int:
    """The tokens counted against the key this minute: used, and reserved by calls still running."""
    return sum(tpm_state(key.pk))


def assert_rate_limited(reply: Reply, code: str, window_end_offset: int) -> None:
    assert reply.status == 429, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("rate_limit_error", code, None)
    expected = seconds_left(window_end_offset, time.time())
    assert abs(int(reply.headers["retry-after"]) - expected) <= 2


# --- requests per minute ---------------------------------------------------------------------------------


def test_it_refuses_the_third_request_in_a_minute(gateway: Gateway) -> None:
    key, raw = apikey_create(name="rpm", rpm_limit=2)
    fresh_window(rpm_window_offset(key))
    assert [generate(gateway.url, raw).status for _ in range(2)] == [200, 200]
    reply = generate(gateway.url, raw)
    assert_rate_limited(reply, "rpm_limit_exceeded", rpm_window_offset(key))
    assert reply.json()["error"]["message"] == "Rate limit reached: 2 requests per minute for this key."


def test_it_counts_requests_per_key(gateway: Gateway) -> None:
    key, raw = apikey_create(name="rpm", rpm_limit=1)
    _, other_raw = apikey_create(name="other", rpm_limit=1)
    fresh_window(rpm_window_offset(key))
    assert generate(gateway.url, raw).status == 200
    assert generate(gateway.url, other_raw).status == 200
    assert generate(gateway.url, raw).status == 429


def test_two_servers_share_the_request_limit(gateway: Gateway, second_gateway: Gateway) -> None:
    key, raw = apikey_create(name="rpm", rpm_limit=3)
    fresh_window(rpm_window_offset(key))
    urls = [gateway.url, second_gateway.url] * 3
    statuses = [generate(url, raw).status for url in urls]
    # Per-process counting would let each server answer three.
    assert statuses == [200, 200, 200, 429, 429, 429]


# --- tokens per minute ------------------------------------------------------------------------------------


def test_it_reserves_prompt_and_max_tokens_before_and_settles_after(gateway: Gateway) -> None:
    # Two requests of 8 prompt + 4 completion tokens, each reserving 8 + max_tokens (4) before the call.
    limit = 2 * (HELLO_TOKENS + 4)
    key, raw = apikey_create(name="tpm", tpm_limit=limit)
    fresh_window(0)

    first = generate(gateway.url, raw)
    assert first.status == 200, first.text
    assert (first.json()["meta"]["prompt_tokens"], first.json()["meta"]["completion_tokens"]) == (HELLO_TOKENS, 4)
    assert tpm_counter(key) == HELLO_TOKENS + 4
    assert settles_to(key, (HELLO_TOKENS + 4, 0))  # nothing stays reserved

    # 12 + 12 = 24 <= 24 before the call.
    second = generate(gateway.url, raw)
    assert second.status == 200, second.text
    assert tpm_counter(key) == 2 * (HELLO_TOKENS + 4)

    third = generate(gateway.url, raw)
    assert_rate_limited(third, "tpm_limit_exceeded", 0)
    assert third.json()["error"]["message"] == f"Token limit reached: {limit} tokens per minute for this key."
    assert tpm_counter(key) == 2 * (HELLO_TOKENS + 4)  # a refused request is not charged


def test_two_servers_share_the_token_limit(gateway: Gateway, second_gateway: Gateway, fake: Fake) -> None:
    key, raw = apikey_create(name="tpm", tpm_limit=3 * (HELLO_TOKENS + 4))
    fresh_window(0)
    urls = [gateway.url, second_gateway.url] * 2
    assert [generate(url, raw).status for url in urls] == [200, 200, 200, 429]
    assert tpm_counter(key) == 3 * (HELLO_TOKENS + 4)
    assert fake.stats()["requests"] == {"demo-fast": 3}


def test_the_token_window_turns_with_the_minute() -> None:
    info = KeyInfo(10_001, "k", False, None, 10, None, None, None, "h")
    names = [tpm_counter_name(10_001, now) for now in (6015.0, 6060.0)]
    cache_redis.sync_client().delete(*names, *map(quota.holds_key, names))
    first = admit_key_sync(info, prompt_tokens=6, max_tokens=2, clock=lambda: 6015.0)
    with pytest.raises(GatewayError) as refused:
        admit_key_sync(info, prompt_tokens=1, max_tokens=2, clock=lambda: 6059.5)
    assert api_error_for(refused.value).headers == {"Retry-After": "1"}
    assert tpm_state(10_001, 6059.5) == (0, 8)
    second = admit_key_sync(info, prompt_tokens=1, max_tokens=2, clock=lambda: 6060.0)
    assert tpm_state(10_001, 6060.0) == (0, 3)
    settle_tokens_sync(second, 30)  # after the call: never refused, even past the limit
    assert tpm_state(10_001, 6061.0) == (30, 0)
    settle_tokens_sync(first, 5)  # a call that ends after its minute settles on that minute
    assert tpm_state(10_001, 6059.5) == (5, 0)


@pytest.fixture(scope="module")
def two_process_gateway(django_db_setup: None) -> Iterator[Gateway]:
    """Two server processes behind one port (as the Dockerfile runs them): a burst lands on both."""
    server = start_gateway(workers=2)
    try:
        yield server
    finally:
        _stop(server.proc)


def test_a_burst_of_concurrent_requests_is_served_within_the_token_limit(
    two_process_gateway: Gateway, seeded: Fake
) -> None:
    # Each request may use HELLO_TOKENS + 200 tokens, and uses all of them. Charged only on its prompt
    # before the call, every request of the burst was let in (all are in flight for a second).
    seeded.configure(**{"demo-fast": {"tokens": 200, "latency_ms": 1000}})
    key, raw = apikey_create(name="burst", tpm_limit=2000)
    per_request = HELLO_TOKENS + 200
    fresh_window(0, needed=30)

    started = time.time()
    with ThreadPoolExecutor(max_workers=40) as pool:
        replies = list(pool.map(lambda _: generate(two_process_gateway.url, raw, max_tokens=200), range(40)))

    served = [r.json()["meta"] for r in replies if r.status == 200]
    refused = [r for r in replies if r.status != 200]
    assert len(served) == 2000 // per_request  # 9: a tenth reservation would pass the limit
    served_tokens = sum(meta["tokens_used"] for meta in served)
    assert served_tokens == len(served) * per_request <= 2000
    for reply in refused:  # refused at once (the served ones took a second): Retry-After is the minute's end
        assert reply.status == 429, reply.text
        assert reply.json()["error"] == {
            "message": "Token limit reached: 2000 tokens per minute for this key.",
            "type": "rate_limit_error",
            "code": "tpm_limit_exceeded",
            "param": None,
        }
        assert abs(int(reply.headers["retry-after"]) - seconds_left(0, started)) <= 2
    assert seeded.stats()["requests"] == {"demo-fast": len(served)}
    assert settles_to(key, (served_tokens, 0))


def test_the_unused_part_of_a_reservation_returns_after_the_call(gateway: Gateway, fake: Fake) -> None:
    # Room for three reservations of HELLO_TOKENS + 100; each call uses HELLO_TOKENS + 2 and gives the rest
    # back, so five calls in a row fit (with the reservations kept, the fourth would be refused).
    fake.configure(**{"demo-fast": {"tokens": 2}})
    key, raw = apikey_create(name="tpm", tpm_limit=3 * (HELLO_TOKENS + 100))
    fresh_window(0)
    assert [generate(gateway.url, raw, max_tokens=100).status for _ in range(5)] == [200] * 5
    assert settles_to(key, (5 * (HELLO_TOKENS + 2), 0))


def test_a_failed_call_keeps_its_prompt_and_releases_the_rest(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"*": {"status": 500}})
    key, raw = apikey_create(name="tpm")
    fresh_window(0)
    assert generate(gateway.url, raw, max_tokens=100).status == 502
    assert settles_to(key, (HELLO_TOKENS, 0))  # as its usage record books it


def test_a_request_for_an_unknown_model_reserves_nothing(gateway: Gateway, fake: Fake) -> None:
    key, raw = apikey_create(name="tpm")
    fresh_window(0)
    body = {"prompt": "hello", "max_tokens": 100, "model": "demo/no-such-model"}
    assert call("POST", gateway.url + "/api/v1/generate", body, key=raw).status == 404
    assert tpm_state(key.pk) == (0, 0)
    assert fake.stats()["requests"] == {}


def test_a_stream_the_client_leaves_settles_with_what_it_produced(gateway: Gateway, fake: Fake) -> None:
    fake.configure(**{"demo-fast": {"hang_after": 2}})  # two tokens, then the upstream goes quiet
    key, raw = apikey_create(name="tpm")
    fresh_window(0)
    request = urllib.request.Request(
        gateway.url + "/api/v1/generate",
        data=json.dumps({"prompt": "hello", "max_tokens": 100, "stream": True}).encode(),
        headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json"},
    )
    response = urllib.request.urlopen(request, timeout=10)
    chunks = 0
    while chunks < 2:
        chunks += response.readline().startswith(b"data: ")
    assert tpm_state(key.pk) == (0, HELLO_TOKENS + 100)  # the call is running: its reservation holds
    response.close()
    assert settles_to(key, (HELLO_TOKENS + 2, 0))


def test_a_request_larger_than_the_whole_limit_is_told_so(gateway: Gateway, fake: Fake) -> None:
    key, raw = apikey_create(name="tpm", tpm_limit=100)
    reply = generate(gateway.url, raw, max_tokens=100)
    assert_rate_limited(reply, "tpm_limit_exceeded", 0)
    assert reply.json()["error"]["message"] == (
        f"This request may use {HELLO_TOKENS + 100} tokens (its prompt and max_tokens); this key allows "
        "100 tokens per minute. Lower max_tokens or shorten the prompt."
    )
    assert fake.stats()["requests"] == {}


def chat(url: str, raw: str, *, n: int, max_tokens: int, request_id: str = "") -> Reply:
    body = {"model": "demo/demo-fast", "messages": [{"role": "user", "content": "hello"}], "max_tokens": max_tokens}
    headers = {"X-Request-ID": request_id} if request_id else None
    return call("POST", url + "/v1/chat/completions", {**body, "n": n}, key=raw, headers=headers)


def test_the_reservation_counts_max_tokens_for_each_of_n_choices(gateway: Gateway, fake: Fake) -> None:
    # Room for the prompt and two choices of 10 tokens: an n=3 call may use more, so it is refused first.
    limit = HELLO_TOKENS + 2 * 10
    key, raw = apikey_create(name="tpm", tpm_limit=limit)
    fresh_window(0)
    refused = chat(gateway.url, raw, n=3, max_tokens=10)
    assert_rate_limited(refused, "tpm_limit_exceeded", 0)
    assert refused.json()["error"]["message"] == (
        f"This request may use {HELLO_TOKENS + 30} tokens (its prompt and max_tokens for each of its 3 choices); "
        f"this key allows {limit} tokens per minute. Lower max_tokens, ask for fewer choices or shorten the prompt."
    )
    assert fake.stats()["requests"] == {}
    assert tpm_state(key.pk) == (0, 0)

    fake.configure(**{"demo-fast": {"tokens": 3, "latency_ms": 1500}})
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(chat, gateway.url, raw, n=2, max_tokens=10, request_id="req-tpm-n2")
        assert wait_until(lambda: tpm_state(key.pk) != (0, 0), timeout=5)
        assert tpm_state(key.pk) == (0, limit)  # held while the upstream answers: 10 tokens for each choice
        served = running.result()
    assert served.status == 200, served.text
    assert [c["finish_reason"] for c in served.json()["choices"]] == ["stop", "stop"]
    wait_until(lambda: UsageRecord.objects.filter(request_id="req-tpm-n2").exists(), timeout=10)
    row = UsageRecord.objects.get(request_id="req-tpm-n2")
    assert (row.prompt_tokens, row.completion_tokens) == (HELLO_TOKENS, 2 * 3)
    assert settles_to(key, (row.prompt_tokens + row.completion_tokens, 0))  # both choices', the rest returned


def test_embeddings_settle_on_the_tokens_the_model_counted(gateway: Gateway, fake: Fake) -> None:
    key, raw = apikey_create(name="tpm")
    fresh_window(0)
    body = {"model": "demo/demo-embed", "input": ["the quick brown fox", "jumps"]}
    reply = call("POST", gateway.url + "/v1/embeddings", body, key=raw)
    assert reply.status == 200, reply.text
    assert settles_to(key, (reply.json()["usage"]["prompt_tokens"], 0))


def test_an_async_job_holds_its_reservation_until_the_worker_settles_it(
    gateway: Gateway, fake: Fake, celery_worker: object
) -> None:
    fake.configure(**{"demo-fast": {"tokens": 5}})
    key, raw = apikey_create(name="tpm")
    fresh_window(0, needed=20)
    reply = call("POST", gateway.url + "/api/v1/generate/async", {"prompt": "hello", "max_tokens": 50}, key=raw)
    assert reply.status == 202, reply.text
    job = Job.objects.get(pk=reply.json()["job_id"])
    reservation = quota.Reservation.from_dict(job.request["reservation"])
    assert reservation.holds == ((tpm_counter_name(key.pk, time.time()), HELLO_TOKENS + 50),)
    assert wait_until(lambda: Job.objects.get(pk=job.pk).status == "succeeded", timeout=30)
    assert tpm_state(key.pk) == (HELLO_TOKENS + 5, 0)


def test_a_cancelled_job_settles_with_the_tokens_it_produced(
    gateway: Gateway, fake: Fake, celery_worker: object
) -> None:
    fake.configure(**{"demo-fast": {"tps": 10, "tokens": 200}})  # twenty seconds of tokens
    key, raw = apikey_create(name="tpm")
    fresh_window(0, needed=30)
    reply = call("POST", gateway.url + "/api/v1/generate/async", {"prompt": "hello", "max_tokens": 200}, key=raw)
    assert reply.status == 202, reply.text
    job_id, session_id = reply.json()["job_id"], reply.json()["session_id"]
    # Cancelled once the worker has published three chunks (read from the stream's replay buffer).
    assert wait_until(lambda: cache_redis.sync_client().xlen(buffer_key(session_id)) >= 3, timeout=30)
    assert call("DELETE", gateway.url + f"/api/v1/jobs/{job_id}", key=raw).status == 200

    assert wait_until(lambda: UsageRecord.objects.filter(request_id=f"job-{job_id}").exists(), timeout=30)
    row = UsageRecord.objects.get(request_id=f"job-{job_id}")
    assert (row.status, row.error_code) == ("cancelled", "cancelled")
    assert 3 <= row.completion_tokens < 200
    assert tpm_state(key.pk) == (row.prompt_tokens + row.completion_tokens, 0)


def test_a_retried_job_keeps_its_reservation_for_the_try_that_settles_it(
    gateway: Gateway, fake: Fake, celery_worker: object
) -> None:
    fake.configure(**{"*": {"fail_first": 1, "tokens": 7}})  # each model fails once: the first try fails
    key, raw = apikey_create(name="tpm")
    fresh_window(0, needed=30)
    reply = call("POST", gateway.url + "/api/v1/generate/async", {"prompt": "hello", "max_tokens": 50}, key=raw)
    assert reply.status == 202, reply.text
    job_id = reply.json()["job_id"]
    assert wait_until(lambda: Job.objects.get(pk=job_id).status == "succeeded", timeout=30)
    assert Job.objects.get(pk=job_id).deliveries == 2
    # Settled by the try that succeeded: the first try's own settle would have left HELLO_TOKENS.
    assert tpm_state(key.pk) == (HELLO_TOKENS + 7, 0)


# --- caps ----------------------------------------------------------------------------------------------------


def test_it_refuses_max_tokens_over_the_keys_cap(gateway: Gateway, fake: Fake) -> None:
    key, raw = apikey_create(name="capped")
    key.max_tokens_cap = 50
    key.save()
    assert generate(gateway.url, raw, max_tokens=50).status == 200
    reply = generate(gateway.url, raw, max_tokens=51)
    assert reply.status == 400
    assert reply.json()["error"] == {
        "message": "max_tokens must be at most 50 for this key.",
        "type": "invalid_request_error",
        "code": "max_tokens_too_large",
        "param": "max_tokens",
    }
    assert fake.stats()["requests"] == {"demo-fast": 1}


def test_it_refuses_a_prompt_over_the_keys_cap(gateway: Gateway, fake: Fake) -> None:
    key, raw = apikey_create(name="capped")
    key.max_prompt_tokens = HELLO_TOKENS
    key.save()
    assert generate(gateway.url, raw, prompt="hello").status == 200
    reply = generate(gateway.url, raw, prompt="hello hello")
    assert reply.status == 400
    error = reply.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "prompt_too_large", "prompt")
    assert error["message"] == f"The prompt has {HELLO_TOKENS + 1} tokens; this key accepts at most {HELLO_TOKENS}."
    assert fake.stats()["requests"] == {"demo-fast": 1}


# --- outbound budgets -------------------------------------------------------------------------------------


def set_budget(model: str, **budget: int) -> None:
    LLMModel.objects.filter(provider__name="demo", name=model).update(**budget)
    routing_changed()


def test_a_spent_request_budget_moves_traffic_to_the_next_model(gateway: Gateway, fake: Fake) -> None:
    set_budget("demo-smart", rpm_budget=2)
    _, raw = apikey_create(name="k")
    metas = [generate(gateway.url, raw, prompt=CODE_PROMPT).json()["meta"] for _ in range(3)]
    assert [m["model"] for m in metas] == ["demo/demo-smart", "demo/demo-smart", "demo/demo-fast"]
    assert metas[2]["attempts"] == [
        {"model": "demo/demo-smart", "outcome": "skipped_budget"},
        {"model": "demo/demo-fast", "outcome": "ok"},
    ]
    assert fake.stats()["requests"] == {"demo-smart": 2, "demo-fast": 1}


def test_a_spent_token_budget_moves_traffic_and_unused_reservations_return(gateway: Gateway, fake: Fake) -> None:
    # Each call reserves prompt + max_tokens (10) and, answered in 2 tokens, gives 8 back: two calls fit
    # in a budget of 2 * (prompt + 10) - 1, which they would not if the reservation were kept.
    set_budget("demo-smart", tpm_budget=2 * (CODE_TOKENS + 10) - 1)
    fake.configure(**{"demo-smart": {"tokens": 2}})
    _, raw = apikey_create(name="k")
    metas = [generate(gateway.url, raw, prompt=CODE_PROMPT, max_tokens=10).json()["meta"] for _ in range(3)]
    assert [m["model"] for m in metas] == ["demo/demo-smart", "demo/demo-smart", "demo/demo-fast"]
    assert [m["completion_tokens"] for m in metas] == [2, 2, 10]
    assert [a["outcome"] for a in metas[2]["attempts"]] == ["skipped_budget", "ok"]


def test_a_token_budget_reserves_max_tokens_for_each_of_n_choices(gateway: Gateway, fake: Fake) -> None:
    # demo-fast's budget holds the prompt and two choices of 10 tokens: an n=3 call is not sent to it.
    budget = HELLO_TOKENS + 2 * 10
    set_budget("demo-fast", tpm_budget=budget)
    _, raw = apikey_create(name="k")
    refused = chat(gateway.url, raw, n=3, max_tokens=10)
    assert refused.status == 503, refused.text
    assert refused.json()["error"]["attempts"] == [{"model": "demo/demo-fast", "outcome": "skipped_budget"}]
    assert fake.stats()["requests"] == {}

    fake.configure(**{"demo-fast": {"tokens": 3}})
    model_pk = LLMModel.objects.get(provider__name="demo", name="demo-fast").pk
    started = time.monotonic()
    served = chat(gateway.url, raw, n=2, max_tokens=10)
    elapsed = time.monotonic() - started
    assert served.status == 200, served.text
    assert served.json()["usage"]["completion_tokens"] == 2 * 3
    # Settled before the answer: what the call used stays taken, plus what the bucket refilled meanwhile.
    left = bucket_tokens(model_pk, "tokens")
    assert budget - (HELLO_TOKENS + 6) <= left <= budget - (HELLO_TOKENS + 6) + budget / 60 * elapsed


@pytest.fixture
def buckets() -> Iterator[int]:
    model_pk = 987_654
    keys = [f"budget:{model_pk}:requests", f"budget:{model_pk}:tokens"]
    cache_redis.sync_client().delete(*keys)
    yield model_pk
    cache_redis.sync_client().delete(*keys)


def bucket_tokens(model_pk: int, kind: str) -> float:
    return float(cache_redis.sync_client().hget(f"budget:{model_pk}:{kind}", "tokens"))


def test_the_request_bucket_refills_at_its_rate_per_minute(buckets: int) -> None:
    now = [1000.0]
    budgets = OutboundBudgets(clock=lambda: now[0])
    assert [budgets.take(buckets, rpm=2, tpm=None, tokens=50) for _ in range(3)] == [True, True, False]
    now[0] += 29.0  # 2 per minute: one request back every 30 s
    assert budgets.take(buckets, rpm=2, tpm=None, tokens=50) is False
    now[0] += 2.0
    assert budgets.take(buckets, rpm=2, tpm=None, tokens=50) is True
    assert budgets.take(buckets, rpm=2, tpm=None, tokens=50) is False
    now[0] += 600.0  # a long pause refills to the capacity, never beyond
    assert [budgets.take(buckets, rpm=2, tpm=None, tokens=50) for _ in range(3)] == [True, True, False]


def test_the_token_bucket_checks_both_budgets_and_settles_after_the_call(buckets: int) -> None:
    now = [1000.0]
    budgets = OutboundBudgets(clock=lambda: now[0])
    assert budgets.take(buckets, rpm=10, tpm=600, tokens=400) is True
    assert budgets.take(buckets, rpm=10, tpm=600, tokens=400) is False  # 200 left
    assert bucket_tokens(buckets, "requests") == 9.0  # a refused take debits neither bucket
    budgets.charge(buckets, tpm=600, tokens=-300)  # 100 of the 400 reserved were used
    assert bucket_tokens(buckets, "tokens") == 500.0
    budgets.charge(buckets, tpm=600, tokens=900)  # a longer answer than reserved: below zero
    assert bucket_tokens(buckets, "tokens") == -400.0
    now[0] += 60.0  # 600 per minute: 10 tokens a second
    assert bucket_tokens(buckets, "tokens") == -400.0
    assert budgets.take(buckets, rpm=10, tpm=600, tokens=200) is True
    assert bucket_tokens(buckets, "tokens") == 0.0
    budgets.charge(buckets, tpm=600, tokens=-5000)  # a refund never exceeds the capacity
    assert bucket_tokens(buckets, "tokens") == 600.0


def test_a_model_without_budgets_is_always_admitted(buckets: int) -> None:
    budgets = OutboundBudgets(clock=lambda: 0.0)
    assert all(budgets.take(buckets, rpm=None, tpm=None, tokens=10**9) for _ in range(5))
    assert cache_redis.sync_client().exists(f"budget:{buckets}:requests") == 0
