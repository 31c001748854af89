"""Circuit breakers on the real database: transitions with an injected clock, and several processes at once."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from collections.abc import Iterator

import pytest
from django.core.cache import cache

from accounts.services import apikey_create
from routing import breaker
from routing.breaker import Breakers, BreakerState
from routing.models import CircuitBreaker, LLMModel, Provider
from routing.selectors import load_routing_config
from spignosapi import loops
from spignosapi.fastpath.redis_client import cache_redis
from tests.fixtures import Fake, Gateway, shared_database_url
from tests.helpers import ROOT, django_env, python
from tests.http import Reply, call

State = CircuitBreaker.State
T0 = 1_700_000_000.0


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    cache.clear()  # the per-test Redis database: stale breaker entries must not leak between tests
    yield
    cache.clear()


def a_model(name: str = "m") -> LLMModel:
    provider, _ = Provider.objects.get_or_create(name="p", defaults={"base_url": "http://127.0.0.1:9/v1"})
    return LLMModel.objects.create(provider=provider, name=name)


class Clock:
    def __init__(self) -> None:
        self.now = [T0]

    def __call__(self) -> float:
        return self.now[0]

    def advance(self, seconds: float) -> None:
        self.now[0] += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breakers(clock: Clock) -> Breakers:
    return Breakers(threshold=3, open_seconds=300, clock=clock)


def state_of(breakers: Breakers, pk: int) -> BreakerState:
    return breakers.states([pk])[pk]


def row(pk: int) -> CircuitBreaker:
    return CircuitBreaker.objects.get(model_id=pk)


def open_breaker(breakers: Breakers, pk: int) -> None:
    for _ in range(3):
        breakers.record_failure(pk, "upstream_error: boom (HTTP 503)")


@pytest.mark.django_db
class TestTransitions:
    def test_it_is_closed_for_a_model_that_never_failed_and_writes_no_row(self, breakers: Breakers) -> None:
        pk = a_model().pk
        assert state_of(breakers, pk) == BreakerState(State.CLOSED, 0, None, None)
        assert breakers.admits(pk, state_of(breakers, pk)) == (True, False)
        breakers.record_success(pk, state_of(breakers, pk))
        assert not CircuitBreaker.objects.filter(model_id=pk).exists()

    def test_it_stays_closed_after_two_failures(self, breakers: Breakers) -> None:
        pk = a_model().pk
        breakers.record_failure(pk, "timeout: one")
        returned = breakers.record_failure(pk, "timeout: two")
        assert returned == BreakerState(State.CLOSED, 2, None, None)
        assert state_of(breakers, pk) == BreakerState(State.CLOSED, 2, None, None)
        assert row(pk).last_error == "timeout: two"
        assert breakers.admits(pk, state_of(breakers, pk)) == (True, False)

    def test_it_opens_on_the_third_failure_and_refuses_while_open(self, breakers: Breakers, clock: Clock) -> None:
        pk = a_model().pk
        assert state_of(breakers, pk).state == State.CLOSED  # cached as closed before the failures
        open_breaker(breakers, pk)
        assert state_of(breakers, pk) == BreakerState(State.OPEN, 3, T0, None)
        assert (row(pk).state, row(pk).consecutive_failures, row(pk).opened_at) == (State.OPEN, 3, T0)
        clock.advance(299.9)
        assert breakers.admits(pk, state_of(breakers, pk)) == (False, False)
        assert row(pk).state == State.OPEN

    def test_a_failure_while_open_counts_but_keeps_the_window(self, breakers: Breakers, clock: Clock) -> None:
        pk = a_model().pk
        open_breaker(breakers, pk)
        clock.advance(100)
        assert breakers.record_failure(pk, "late") == BreakerState(State.OPEN, 4, T0, None)

    def test_one_caller_gets_the_half_open_trial_after_the_window(self, breakers: Breakers, clock: Clock) -> None:
        pk = a_model().pk
        open_breaker(breakers, pk)
        clock.advance(300)
        seen = state_of(breakers, pk)  # both callers read the same open state before either claims
        assert breakers.admits(pk, seen) == (True, True)
        assert breakers.admits(pk, seen) == (False, False)
        assert state_of(breakers, pk) == BreakerState(State.HALF_OPEN, 3, T0, T0 + 300)
        # a caller that reads the new state is refused without touching the database
        assert breakers.admits(pk, state_of(breakers, pk)) == (False, False)

    def test_a_successful_trial_closes_the_breaker(self, breakers: Breakers, clock: Clock) -> None:
        pk = a_model().pk
        open_breaker(breakers, pk)
        clock.advance(300)
        seen = state_of(breakers, pk)
        assert breakers.admits(pk, seen) == (True, True)
        breakers.record_success(pk, seen)
        assert state_of(breakers, pk) == BreakerState(State.CLOSED, 0, None, None)
        assert (row(pk).state, row(pk).consecutive_failures, row(pk).trial_started_at) == (State.CLOSED, 0, None)

    def test_a_failed_trial_reopens_with_a_new_window(self, breakers: Breakers, clock: Clock) -> None:
        pk = a_model().pk
        open_breaker(breakers, pk)
        clock.advance(301)
        assert breakers.admits(pk, state_of(breakers, pk)) == (True, True)
        clock.advance(2)
        assert breakers.record_failure(pk, "timeout: again") == BreakerState(State.OPEN, 4, T0 + 303, None)
        assert state_of(breakers, pk) == BreakerState(State.OPEN, 4, T0 + 303, None)
        clock.advance(299)
        assert breakers.admits(pk, state_of(breakers, pk)) == (False, False)
        clock.advance(1)
        assert breakers.admits(pk, state_of(breakers, pk)) == (True, True)

    def test_a_stale_trial_can_be_claimed_again(self, breakers: Breakers, clock: Clock) -> None:
        pk = a_model().pk
        open_breaker(breakers, pk)
        clock.advance(300)
        assert breakers.admits(pk, state_of(breakers, pk)) == (True, True)  # its holder never reports back
        clock.advance(299)
        assert breakers.admits(pk, state_of(breakers, pk)) == (False, False)
        clock.advance(1)
        assert breakers.admits(pk, state_of(breakers, pk)) == (True, True)
        assert row(pk).trial_started_at == T0 + 600

    def test_a_released_trial_goes_to_the_next_caller(self, breakers: Breakers, clock: Clock) -> None:
        pk = a_model().pk
        open_breaker(breakers, pk)
        clock.advance(300)
        assert breakers.admits(pk, state_of(breakers, pk)) == (True, True)
        breakers.release(pk)
        assert state_of(breakers, pk) == BreakerState(State.OPEN, 3, T0, None)
        assert breakers.admits(pk, state_of(breakers, pk)) == (True, True)

    def test_release_leaves_a_breaker_that_is_not_half_open_alone(self, breakers: Breakers) -> None:
        pk = a_model().pk
        open_breaker(breakers, pk)
        breakers.release(pk)
        assert state_of(breakers, pk) == BreakerState(State.OPEN, 3, T0, None)

    def test_a_success_resets_the_count_of_a_closed_breaker(self, breakers: Breakers) -> None:
        pk = a_model().pk
        breakers.record_failure(pk, "x")
        breakers.record_failure(pk, "x")
        breakers.record_success(pk, state_of(breakers, pk))
        breakers.record_failure(pk, "x")
        assert state_of(breakers, pk) == BreakerState(State.CLOSED, 1, None, None)

    def test_reset_closes_an_open_breaker(self, breakers: Breakers) -> None:
        pk = a_model().pk
        open_breaker(breakers, pk)
        assert state_of(breakers, pk).state == State.OPEN
        breakers.reset(pk)
        assert state_of(breakers, pk) == BreakerState(State.CLOSED, 0, None, None)
        assert (row(pk).state, row(pk).consecutive_failures, row(pk).last_error) == (State.CLOSED, 0, "")

    def test_reset_of_a_model_without_a_row_creates_a_closed_one(self, breakers: Breakers) -> None:
        pk = a_model().pk
        breakers.reset(pk)
        assert row(pk).state == State.CLOSED

    def test_states_reads_many_models_and_caches_them(
        self, breakers: Breakers, django_assert_num_queries: object
    ) -> None:
        first, second = a_model("a").pk, a_model("b").pk
        open_breaker(breakers, first)
        assert breakers.states([first, second]) == {
            first: BreakerState(State.OPEN, 3, T0, None),
            second: BreakerState(State.CLOSED, 0, None, None),
        }
        with django_assert_num_queries(0):  # type: ignore[operator]
            assert breakers.states([first, second])[first].state == State.OPEN

    def test_states_serve_the_cache_until_a_transition_forgets_it(self, breakers: Breakers) -> None:
        pk = a_model().pk
        assert state_of(breakers, pk).state == State.CLOSED
        CircuitBreaker.objects.create(model_id=pk, state=State.OPEN, consecutive_failures=3, opened_at=T0)
        assert state_of(breakers, pk).state == State.CLOSED  # a raw write is not a transition
        breakers.record_failure(pk, "x")
        assert state_of(breakers, pk) == BreakerState(State.OPEN, 4, T0, None)


# --- several processes at once ---------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, sys
    import django
    django.setup()
    from django.db import connection
    from routing.breaker import Breakers

    pk, count, action = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    breakers = Breakers(threshold=3, open_seconds=300)
    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()  # every process starts at the same moment
    if action == "fail":
        for i in range(count):
            breakers.record_failure(pk, f"boom {i}")
        print(json.dumps({"done": count}), flush=True)
    else:
        seen = breakers.states([pk])[pk]
        print(json.dumps({"admitted": breakers.admits(pk, seen)}), flush=True)
    """
)


def run_together(pk: int, count: int, action: str, processes: int) -> list[dict[str, object]]:
    """Start the workers, wait until each is connected, release them at once, return what each printed."""
    env = django_env(DATABASE_URL=shared_database_url())
    procs = [
        subprocess.Popen(
            [python(), "-c", WORKER, str(pk), str(count), action],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            results.append(json.loads(out))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.django_db(transaction=True)  # a cache miss reads the database in a thread
class TestReadsFromTheEventLoop:
    """``states_for``: the chain's states from the entries ``Breakers.states`` caches, in one round trip."""

    def test_it_reads_the_cached_states_and_the_database_for_the_rest(self, breakers: Breakers) -> None:
        opened, never_failed = a_model("m1"), a_model("m2")
        open_breaker(breakers, opened.pk)
        assert state_of(breakers, opened.pk).state == State.OPEN  # cached by the synchronous reader
        cache.set(f"breaker:{opened.pk}", (State.OPEN, 7, T0, None))  # so the read below must be the cache's
        config = load_routing_config()

        states = loops.run(breaker.states_for(config, ["p/m1", "p/m2", "p/not-configured"]))

        assert states == {
            opened.pk: BreakerState(State.OPEN, 7, T0, None),
            never_failed.pk: BreakerState(State.CLOSED, 0, None, None),
        }
        assert cache.get(f"breaker:{never_failed.pk}") == (State.CLOSED, 0, None, None)  # the miss refilled it

    def test_it_takes_the_entries_a_caller_read_in_its_own_round_trip(self, breakers: Breakers) -> None:
        opened, never_failed = a_model("m1"), a_model("m2")
        open_breaker(breakers, opened.pk)
        state_of(breakers, opened.pk)
        config = load_routing_config()
        keys = breaker.cache_keys(config, ["p/m1", "p/m2"])
        assert keys == [cache.make_key(f"breaker:{opened.pk}"), cache.make_key(f"breaker:{never_failed.pk}")]
        raw = cache_redis.sync_client().mget(keys)  # what the admission script returns for them
        assert raw[1] is None

        states = loops.run(breaker.states_for(config, ["p/m1", "p/m2"], raw))

        assert states == {
            opened.pk: BreakerState(State.OPEN, 3, T0, None),
            never_failed.pk: BreakerState(State.CLOSED, 0, None, None),
        }

    def test_it_reads_the_database_when_redis_gives_nothing(self, breakers: Breakers) -> None:
        opened = a_model("m1")
        open_breaker(breakers, opened.pk)
        states = loops.run(breaker.states_for(load_routing_config(), ["p/m1"], [None]))
        assert states == {opened.pk: BreakerState(State.OPEN, 3, T0, None)}
        assert loops.run(breaker.states_for(load_routing_config(), [])) == {}


@pytest.mark.django_db(transaction=True)
def test_concurrent_processes_never_lose_a_failure(breakers: Breakers) -> None:
    pk = a_model().pk  # no breaker row yet: the processes also race to create it
    results = run_together(pk, count=25, action="fail", processes=3)
    assert results == [{"done": 25}] * 3
    breaker = row(pk)
    assert breaker.consecutive_failures == 75
    assert breaker.state == State.OPEN
    assert breaker.last_error.startswith("boom ")
    assert state_of(breakers, pk).failures == 75


@pytest.mark.django_db(transaction=True)
def test_only_one_process_gets_the_half_open_trial() -> None:
    pk = a_model().pk
    CircuitBreaker.objects.create(model_id=pk, state=State.OPEN, consecutive_failures=3, opened_at=T0)
    results = run_together(pk, count=0, action="trial", processes=4)
    assert sorted(json.dumps(r) for r in results) == sorted(
        [json.dumps({"admitted": [True, True]})] + [json.dumps({"admitted": [False, False]})] * 3
    )
    assert row(pk).state == State.HALF_OPEN


# --- through the gateway over real HTTP ------------------------------------------------------------------


def generate(gateway: Gateway, raw: str, **body: object) -> Reply:
    return call("POST", gateway.url + "/api/v1/generate", {"max_tokens": 3, **body}, key=raw)


def demo_smart_pk() -> int:
    return LLMModel.objects.get(provider__name="demo", name="demo-smart").pk


def breaker_listing(gateway: Gateway, staff_raw: str, model: str) -> dict[str, object]:
    reply = call("GET", gateway.url + "/api/v1/routing/circuit-breakers", key=staff_raw)
    assert reply.status == 200, reply.text
    [entry] = [b for b in reply.json()["circuit_breakers"] if b["model"] == model]
    return dict(entry)


def opened_long_ago(pk: int) -> None:
    """The model's breaker, opened through the real API by a clock that ran 301 seconds behind."""
    behind = Breakers(threshold=3, open_seconds=300, clock=lambda: time.time() - 301)
    open_breaker(behind, pk)


SMART_OK = {"model": "demo/demo-smart", "outcome": "ok"}
SMART_SKIPPED = {"model": "demo/demo-smart", "outcome": "skipped_open"}
FAST_OK = {"model": "demo/demo-fast", "outcome": "ok"}


@pytest.mark.django_db(transaction=True)
class TestThroughTheGateway:
    def test_three_503s_open_the_breaker_and_the_next_request_skips_the_model(
        self, gateway: Gateway, fake: Fake
    ) -> None:
        _, raw = apikey_create(name="k")
        _, staff = apikey_create(name="staff", is_staff=True)
        fake.configure(**{"demo-smart": {"status": 503}})
        for expected_failures in (1, 2, 3):
            reply = generate(gateway, raw, prompt="explain why")
            assert reply.status == 200, reply.text
            attempts = reply.json()["meta"]["attempts"]
            assert [a["outcome"] for a in attempts] == ["error", "ok"]
            assert row(demo_smart_pk()).consecutive_failures == expected_failures
            assert row(demo_smart_pk()).state == (State.OPEN if expected_failures == 3 else State.CLOSED)

        listed = breaker_listing(gateway, staff, "demo/demo-smart")
        assert (listed["state"], listed["consecutive_failures"]) == ("open", 3)
        assert str(listed["last_error"]).endswith("(HTTP 503)")
        assert listed["opened_at"] == row(demo_smart_pk()).opened_at
        assert breaker_listing(gateway, staff, "demo/demo-fast")["state"] == "closed"

        reply = generate(gateway, raw, prompt="explain why")
        assert reply.status == 200, reply.text
        assert reply.json()["meta"]["attempts"] == [SMART_SKIPPED, FAST_OK]
        assert fake.stats()["requests"] == {"demo-smart": 3, "demo-fast": 4}

    def test_a_breaker_opened_through_one_server_is_honoured_by_another(self, gateway: Gateway, fake: Fake) -> None:
        """Two web processes on one database and Redis: failures seen by one open the breaker for both."""
        from tests.fixtures import _stop, start_gateway

        _, raw = apikey_create(name="k")
        second = start_gateway()
        try:
            fake.configure(**{"demo-smart": {"status": 503}})
            for server in (gateway, second, gateway):  # the failures alternate between the servers
                assert generate(server, raw, prompt="explain why").json()["meta"]["attempts"][0]["outcome"] == "error"
            assert row(demo_smart_pk()).state == State.OPEN
            for server in (second, gateway):
                reply = generate(server, raw, prompt="explain why")
                assert reply.json()["meta"]["attempts"] == [SMART_SKIPPED, FAST_OK]
            assert fake.stats()["requests"] == {"demo-smart": 3, "demo-fast": 5}
        finally:
            _stop(second.proc)

    def test_the_reset_endpoint_closes_an_open_breaker(self, gateway: Gateway, fake: Fake) -> None:
        _, raw = apikey_create(name="k")
        _, staff = apikey_create(name="staff", is_staff=True)
        open_breaker(Breakers(threshold=3, open_seconds=300), demo_smart_pk())
        assert generate(gateway, raw, prompt="explain why").json()["meta"]["attempts"] == [SMART_SKIPPED, FAST_OK]

        reply = call("POST", gateway.url + "/api/v1/routing/circuit-breakers/demo/demo-smart/reset", key=staff)
        assert reply.status == 200, reply.text
        assert reply.json() == {"model": "demo/demo-smart", "state": "closed"}
        assert (row(demo_smart_pk()).state, row(demo_smart_pk()).consecutive_failures) == (State.CLOSED, 0)
        assert breaker_listing(gateway, staff, "demo/demo-smart")["state"] == "closed"
        assert generate(gateway, raw, prompt="explain why").json()["meta"]["attempts"] == [SMART_OK]

    def test_the_breaker_endpoints_are_for_staff_keys_only(self, gateway: Gateway) -> None:
        _, raw = apikey_create(name="k")
        _, staff = apikey_create(name="staff", is_staff=True)
        listing = call("GET", gateway.url + "/api/v1/routing/circuit-breakers", key=raw)
        assert listing.status == 403
        assert listing.json()["error"]["type"] == "permission_error"
        reset = call("POST", gateway.url + "/api/v1/routing/circuit-breakers/demo/demo-smart/reset", key=raw)
        assert reset.status == 403
        unknown = call("POST", gateway.url + "/api/v1/routing/circuit-breakers/demo/nope/reset", key=staff)
        assert unknown.status == 404
        assert unknown.json()["error"]["code"] == "model_not_found"

    def test_after_the_window_a_successful_trial_closes_the_breaker(self, gateway: Gateway, fake: Fake) -> None:
        _, raw = apikey_create(name="k")
        opened_long_ago(demo_smart_pk())
        reply = generate(gateway, raw, prompt="explain why")
        assert reply.status == 200, reply.text
        assert reply.json()["meta"]["attempts"] == [SMART_OK]
        breaker = row(demo_smart_pk())
        assert (breaker.state, breaker.consecutive_failures, breaker.opened_at) == (State.CLOSED, 0, None)

    def test_after_the_window_a_failed_trial_reopens_the_breaker(self, gateway: Gateway, fake: Fake) -> None:
        _, raw = apikey_create(name="k")
        opened_long_ago(demo_smart_pk())
        old_opened_at = row(demo_smart_pk()).opened_at
        assert old_opened_at is not None
        fake.configure(**{"demo-smart": {"status": 502}})
        before = time.time()
        reply = generate(gateway, raw, prompt="explain why")
        assert reply.status == 200, reply.text
        assert [(a["model"], a["outcome"]) for a in reply.json()["meta"]["attempts"]] == [
            ("demo/demo-smart", "error"),
            ("demo/demo-fast", "ok"),
        ]
        breaker = row(demo_smart_pk())
        assert (breaker.state, breaker.consecutive_failures, breaker.trial_started_at) == (State.OPEN, 4, None)
        assert breaker.opened_at is not None and breaker.opened_at >= before > old_opened_at
        # a fresh window: the next request skips the model again
        assert generate(gateway, raw, prompt="explain why").json()["meta"]["attempts"] == [SMART_SKIPPED, FAST_OK]
        assert fake.stats()["requests"] == {"demo-smart": 1, "demo-fast": 2}

    def test_a_trial_that_ends_in_a_400_is_given_back(self, gateway: Gateway, fake: Fake) -> None:
        _, raw = apikey_create(name="k")
        opened_long_ago(demo_smart_pk())
        old_opened_at = row(demo_smart_pk()).opened_at
        fake.configure(**{"demo-smart": {"status": 400}})
        assert generate(gateway, raw, prompt="explain why").status == 400
        breaker = row(demo_smart_pk())
        assert (breaker.state, breaker.consecutive_failures, breaker.opened_at) == (State.OPEN, 3, old_opened_at)
        fake.configure(**{"demo-smart": {}})
        assert generate(gateway, raw, prompt="explain why").json()["meta"]["attempts"] == [SMART_OK]
        assert row(demo_smart_pk()).state == State.CLOSED

    def test_a_non_retryable_400_is_returned_at_once_and_does_not_count(self, gateway: Gateway, fake: Fake) -> None:
        _, raw = apikey_create(name="k")
        fake.configure(**{"demo-smart": {"status": 400}})
        for _ in range(3):
            reply = generate(gateway, raw, prompt="explain why")
            assert reply.status == 400, reply.text
            error = reply.json()["error"]
            assert (error["type"], error["code"]) == ("invalid_request_error", "upstream_bad_request")
            [attempt] = error["attempts"]
            assert (attempt["model"], attempt["outcome"]) == ("demo/demo-smart", "error")
            assert attempt["error"].endswith("(HTTP 400)")
        assert fake.stats()["requests"] == {"demo-smart": 3}  # no fallback to demo-fast
        assert not CircuitBreaker.objects.filter(model_id=demo_smart_pk()).exists()

    def test_a_model_asked_for_by_name_stays_behind_its_breaker(self, gateway: Gateway, fake: Fake) -> None:
        _, raw = apikey_create(name="k")
        open_breaker(Breakers(threshold=3, open_seconds=300), demo_smart_pk())
        reply = generate(gateway, raw, prompt="hi", model="demo/demo-smart")
        assert reply.status == 503, reply.text
        error = reply.json()["error"]
        assert (error["type"], error["code"]) == ("service_unavailable", "no_model_available")
        assert error["attempts"] == [SMART_SKIPPED]
        assert reply.headers["retry-after"] == "30"
        assert fake.stats()["requests"] == {}
