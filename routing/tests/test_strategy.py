"""Routing strategies: each one ranking a chain from a given snapshot, falling back to the chain order when
its data is stale or missing; figures published by monitoring shifting the choice; and, over real HTTP with
the fake upstream, a ``latency`` category moving its traffic when the figures change, behind the breakers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from accounts.services import apikey_create
from ledger.coefficients import Coefficient, EnergyProfile, Range
from routing.breaker import Breakers
from routing.models import Category, LLMModel, ModelLatency
from routing.selectors import LatencyFigure, ModelInfo, latency_figures, load_latency_figures, routing_config
from routing.services import category_upsert, publish_latency_figures
from routing.strategy import Freshness, Ranking, rank
from tests.fixtures import Fake, Gateway
from tests.http import Reply, call, sse_events

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
FRESH = Freshness(max_age_s=900, min_samples=5)
CHAIN = ("p/a", "p/b", "q/c")


def info(model_id: str, *, price_in: float = 0.0, price_out: float = 0.0, **more: Any) -> ModelInfo:
    provider, _, name = model_id.partition("/")
    fields: dict[str, Any] = {
        "pk": hash(model_id) % 1000,
        "model_id": model_id,
        "provider": provider,
        "name": name,
        "context_window": 8192,
        "price_in_per_m": price_in,
        "price_out_per_m": price_out,
        "energy_kwh_per_m": None,
        "rpm_budget": None,
        "tpm_budget": None,
        "monitor": True,
        "grid_gco2e_per_kwh": 400.0,
    }
    return ModelInfo(**{**fields, **more})


def profile(kwh_per_m: float, *, estimated: bool = False) -> EnergyProfile:
    return EnergyProfile(((Coefficient(output=Range.single(kwh_per_m), estimated=estimated),),))


def figure(p50: float, samples: int = 40, age_s: float = 60) -> LatencyFigure:
    return LatencyFigure(p50_ttft_ms=p50, samples=samples, measured_at=NOW - timedelta(seconds=age_s))


def by_latency(figures: dict[str, LatencyFigure], chain: tuple[str, ...] = CHAIN) -> Ranking:
    models = {model_id: info(model_id) for model_id in chain}
    return rank(
        "latency", chain, models, prompt_tokens=10, completion_tokens=10, now=NOW, latency=figures, freshness=FRESH
    )


# --- each strategy, from a given snapshot -----------------------------------------------------------------


def test_ordered_keeps_the_chain_and_says_nothing() -> None:
    models = {m: info(m) for m in CHAIN}
    assert rank("ordered", CHAIN, models, prompt_tokens=1, completion_tokens=1, now=NOW) == Ranking(CHAIN, {})


def test_latency_puts_the_lowest_p50_first() -> None:
    ranking = by_latency({"p/a": figure(900), "p/b": figure(412, samples=38), "q/c": figure(650)})
    assert ranking.chain == ("p/b", "q/c", "p/a")
    assert ranking.reasons == {
        "p/b": "latency p50 412 ms (38 samples)",
        "q/c": "latency p50 650 ms (40 samples)",
        "p/a": "latency p50 900 ms (40 samples)",
    }


def test_latency_keeps_models_without_usable_figures_in_chain_order_after_the_ranked_ones() -> None:
    figures = {
        "p/a": figure(100, age_s=901),  # older than the 900 s allowed
        "p/c": figure(50, samples=4),  # fewer than 5 samples
        "q/d": figure(700),
        "q/e": figure(300, samples=5, age_s=900),  # exactly at both limits: used
    }
    ranking = by_latency(figures, ("p/a", "p/b", "p/c", "q/d", "q/e"))
    assert ranking.chain == ("q/e", "q/d", "p/a", "p/b", "p/c")
    assert ranking.reasons == {
        "q/e": "latency p50 300 ms (5 samples)",
        "q/d": "latency p50 700 ms (40 samples)",
        "p/a": "stale latency figures (901 s old): chain order",
        "p/b": "no latency figures: chain order",
        "p/c": "too few latency samples (4 < 5): chain order",
    }


def test_latency_without_any_usable_figure_walks_the_chain_as_written() -> None:
    assert by_latency({}).chain == CHAIN
    assert by_latency({m: figure(10, age_s=3600) for m in CHAIN}).chain == CHAIN


def test_latency_ties_keep_their_chain_order() -> None:
    assert by_latency({"p/a": figure(300), "p/b": figure(200), "q/c": figure(200)}).chain == ("p/b", "q/c", "p/a")


def test_cost_ranks_by_the_expected_price_of_this_request() -> None:
    models = {
        "p/a": info("p/a", price_in=1.00, price_out=4.00),
        # cheap to read, dear to write
        "p/b": info("p/b", price_in=0.10, price_out=10.00),
        "q/c": info("q/c", price_in=3.00, price_out=1.00),
    }

    def cheapest(prompt: int, completion: int) -> Ranking:
        return rank("cost", CHAIN, models, prompt_tokens=prompt, completion_tokens=completion, now=NOW)

    # A long prompt and a short answer: what the prompt costs decides.
    # a: 1000*1 + 10*4 = 1040; b: 1000*0.1 + 10*10 = 200; c: 1000*3 + 10*1 = 3010 (micro-dollars)
    long_prompt = cheapest(1000, 10)
    assert long_prompt.chain == ("p/b", "p/a", "q/c")
    assert long_prompt.reasons["p/b"] == (
        "expected cost $0.000200 (1000 prompt tokens × $0.1/M + 10 max tokens × $10/M)"
    )
    # A short prompt and a long answer: the output price decides.
    # a: 10 + 4000 = 4010; b: 1 + 10000 = 10001; c: 30 + 1000 = 1030
    assert cheapest(10, 1000).chain == ("q/c", "p/a", "p/b")


def test_cost_ranks_free_models_first_in_chain_order() -> None:
    models = {"p/a": info("p/a", price_out=1.0), "p/b": info("p/b"), "q/c": info("q/c")}
    ranking = rank("cost", CHAIN, models, prompt_tokens=10, completion_tokens=10, now=NOW)
    assert ranking.chain == ("p/b", "q/c", "p/a")


def test_carbon_ranks_by_coefficient_times_grid_times_pue() -> None:
    models = {
        # 0.3 kWh/M × 400 g/kWh × 1.2 = 144 g per million tokens
        "p/a": info("p/a", energy=profile(0.3), grid_gco2e_per_kwh=400.0, pue=1.2),
        # a bigger model on a clean grid: 1.0 × 20 × 1.1 = 22
        "p/b": info("p/b", energy=profile(1.0), grid_gco2e_per_kwh=20.0, pue=1.1),
        # a small model on a coal grid: 0.05 × 900 × 1.0 = 45 (estimated)
        "q/c": info("q/c", energy=profile(0.05, estimated=True), grid_gco2e_per_kwh=900.0, pue=1.0),
    }
    ranking = rank("carbon", CHAIN, models, prompt_tokens=10, completion_tokens=10, now=NOW)
    assert ranking.chain == ("p/b", "q/c", "p/a")
    assert ranking.reasons == {
        "p/b": "carbon 0.022 gCO2e per 1k tokens (1 kWh/M × 20 g/kWh × PUE 1.1)",
        "q/c": "carbon 0.045 gCO2e per 1k tokens (0.05 kWh/M × 900 g/kWh × PUE 1, estimated)",
        "p/a": "carbon 0.144 gCO2e per 1k tokens (0.3 kWh/M × 400 g/kWh × PUE 1.2)",
    }


def test_carbon_uses_the_coefficient_valid_at_the_time_of_the_request() -> None:
    later = Coefficient(output=Range.single(0.01), valid_from=NOW + timedelta(days=1))
    models = {
        "p/a": info("p/a", energy=EnergyProfile(((Coefficient(output=Range.single(0.3)), later),))),
        "p/b": info("p/b", energy=profile(0.1)),
    }
    today = rank("carbon", ("p/a", "p/b"), models, prompt_tokens=1, completion_tokens=1, now=NOW)
    tomorrow = rank("carbon", ("p/a", "p/b"), models, prompt_tokens=1, completion_tokens=1, now=NOW + timedelta(days=2))
    assert (today.chain, tomorrow.chain) == (("p/b", "p/a"), ("p/a", "p/b"))


def test_a_model_missing_from_the_snapshot_keeps_its_chain_position_last() -> None:
    models = {"p/a": info("p/a", price_in=5.0), "q/c": info("q/c", price_in=1.0)}
    ranking = rank("cost", CHAIN, models, prompt_tokens=10, completion_tokens=0, now=NOW)
    assert ranking.chain == ("q/c", "p/a", "p/b")
    assert ranking.reasons["p/b"] == "unknown model: chain order"


def test_an_unknown_strategy_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown routing strategy 'fastest'"):
        rank("fastest", CHAIN, {m: info(m) for m in CHAIN}, prompt_tokens=1, completion_tokens=1, now=NOW)


# --- monitoring publishes figures; the snapshot and the choice follow ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_publishing_new_figures_shifts_the_choice(seeded: Fake) -> None:
    category_upsert(name="code", strategy="latency")
    config = routing_config.get(recheck=True)
    chain = config.categories["code"].chain
    assert chain == ("demo/demo-smart", "demo/demo-fast")

    def choice() -> tuple[str, ...]:
        figures = latency_figures.get()
        return rank(
            "latency", chain, config.models, prompt_tokens=1, completion_tokens=1, now=NOW, latency=figures,
            freshness=FRESH,
        ).chain  # fmt: skip

    assert choice() == chain  # nothing published yet
    stored = publish_latency_figures(
        {"demo/demo-smart": figure(800), "demo/demo-fast": figure(200, samples=12), "nope/gone": figure(1)}
    )
    assert stored == 2  # (a model that does not exist is ignored)
    assert choice() == ("demo/demo-fast", "demo/demo-smart")

    publish_latency_figures({"demo/demo-smart": figure(150, samples=90)})  # demo-fast keeps its last figure
    assert choice() == ("demo/demo-smart", "demo/demo-fast")
    row = ModelLatency.objects.get(model__name="demo-smart")
    assert (row.p50_ttft_ms, row.samples, row.measured_at) == (150.0, 90, NOW - timedelta(seconds=60))
    assert load_latency_figures() == {
        "demo/demo-smart": figure(150, samples=90),
        "demo/demo-fast": figure(200, samples=12),
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "bad",
    [
        LatencyFigure(-1.0, 10, NOW),
        LatencyFigure(float("nan"), 10, NOW),
        LatencyFigure(10.0, -1, NOW),
        LatencyFigure(10.0, 10, NOW.replace(tzinfo=None)),
        LatencyFigure(None, 0, None),  # type: ignore[arg-type]  # (a model with no samples, passed on as is)
    ],
)
def test_publishing_a_figure_that_cannot_be_one_stores_nothing(seeded: Fake, bad: LatencyFigure) -> None:
    with pytest.raises(ValueError, match="not a latency figure for 'demo/demo-smart'"):
        publish_latency_figures({"demo/demo-fast": figure(100), "demo/demo-smart": bad})
    assert not ModelLatency.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_figures_that_cannot_be_read_route_in_chain_order(seeded: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database is gone when the latency snapshot reloads: the request is routed all the same."""
    from routing import gateway
    from routing.router import Route

    category_upsert(name="code", strategy="latency")
    publish_latency_figures({"demo/demo-fast": figure(10)})
    config = routing_config.get(recheck=True)

    def unreadable() -> dict[str, LatencyFigure]:
        raise ConnectionError("database unavailable")

    monkeypatch.setattr(latency_figures, "loader", unreadable)
    latency_figures.invalidate()
    call = gateway.Call(key=None, request_id="r", endpoint="test", messages=[{"role": "user", "content": "x"}])
    route = Route(category="code", chain=config.categories["code"].chain, route_mode="keywords")
    ranked = asyncio.run(gateway._by_strategy(call, config, route, prompt_tokens=1))
    assert ranked.chain == ("demo/demo-smart", "demo/demo-fast")
    assert set(ranked.reasons.values()) == {"no latency figures: chain order"}


# --- over real HTTP ---------------------------------------------------------------------------------------------


def generate(gateway: Gateway, raw: str, **body: object) -> Reply:
    return call("POST", gateway.url + "/api/v1/generate", {"max_tokens": 3, **body}, key=raw)


def meta_of(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply.text
    meta: dict[str, Any] = reply.json()["meta"]
    return meta


@pytest.mark.django_db(transaction=True)
def test_a_latency_category_shifts_its_traffic_when_the_figures_change(gateway: Gateway, fake: Fake) -> None:
    _, raw = apikey_create(name="k")
    category_upsert(name="reasoning", strategy="latency")  # chain: demo-smart, then demo-fast
    now = datetime.now(UTC)

    # No figures yet: the chain as written, each model saying why it stands there.
    meta = meta_of(generate(gateway, raw, prompt="explain why"))
    assert (meta["category"], meta["model"]) == ("reasoning", "demo/demo-smart")
    assert meta["attempts"] == [
        {"model": "demo/demo-smart", "outcome": "ok", "reason": "no latency figures: chain order"}
    ]

    publish_latency_figures(
        {
            "demo/demo-smart": LatencyFigure(900.0, 38, now),
            "demo/demo-fast": LatencyFigure(412.0, 38, now),
        }
    )
    meta = meta_of(generate(gateway, raw, prompt="explain why"))
    assert meta["model"] == "demo/demo-fast"
    assert meta["attempts"] == [
        {"model": "demo/demo-fast", "outcome": "ok", "reason": "latency p50 412 ms (38 samples)"}
    ]

    # The figures turn: so does the traffic (the streaming door too).
    publish_latency_figures({"demo/demo-smart": LatencyFigure(150.0, 40, now)})
    assert meta_of(generate(gateway, raw, prompt="explain why"))["model"] == "demo/demo-smart"
    complete = sse_events(generate(gateway, raw, prompt="explain why", stream=True))[-1]
    assert complete["meta"]["attempts"] == [
        {"model": "demo/demo-smart", "outcome": "ok", "reason": "latency p50 150 ms (40 samples)"}
    ]

    # Figures gone stale: back to the chain order, which the attempts say.
    publish_latency_figures(
        {
            "demo/demo-smart": LatencyFigure(900.0, 40, now - timedelta(hours=2)),
            "demo/demo-fast": LatencyFigure(100.0, 40, now - timedelta(hours=2)),
        }
    )
    meta = meta_of(generate(gateway, raw, prompt="explain why"))
    assert meta["model"] == "demo/demo-smart"
    assert meta["attempts"][0]["reason"].startswith("stale latency figures (")
    assert meta["attempts"][0]["reason"].endswith(" s old): chain order")
    assert fake.stats()["requests"] == {"demo-smart": 4, "demo-fast": 1}


@pytest.mark.django_db(transaction=True)
def test_an_open_breaker_sends_the_request_to_the_next_best(gateway: Gateway, fake: Fake) -> None:
    _, raw = apikey_create(name="k")
    category_upsert(name="code", strategy="latency")  # chain: demo-smart, then demo-fast
    now = datetime.now(UTC)
    publish_latency_figures(
        {"demo/demo-smart": LatencyFigure(900.0, 40, now), "demo/demo-fast": LatencyFigure(100.0, 40, now)}
    )
    breakers = Breakers(threshold=3, open_seconds=300)
    fast = LLMModel.objects.get(provider__name="demo", name="demo-fast").pk
    for _ in range(3):
        breakers.record_failure(fast, "server_error: upstream down (HTTP 503)")

    meta = meta_of(generate(gateway, raw, prompt="fix this python bug"))
    assert (meta["category"], meta["model"]) == ("code", "demo/demo-smart")
    assert meta["attempts"] == [
        {
            "model": "demo/demo-fast",
            "outcome": "skipped_open",
            "reason": "breaker open (ranked by latency p50 100 ms (40 samples))",
        },
        {"model": "demo/demo-smart", "outcome": "ok", "reason": "latency p50 900 ms (40 samples)"},
    ]
    assert fake.stats()["requests"] == {"demo-smart": 1}


@pytest.mark.django_db(transaction=True)
def test_a_carbon_category_prefers_the_cleaner_model_from_the_providers_grid(gateway: Gateway, fake: Fake) -> None:
    _, raw = apikey_create(name="k")
    category_upsert(name="code", strategy="carbon")
    # demo-smart: 0.30 kWh/M, demo-fast: 0.05 kWh/M, both on the demo provider's grid: the smaller one wins.
    meta = meta_of(generate(gateway, raw, prompt="fix this python bug"))
    assert meta["model"] == "demo/demo-fast"
    assert meta["attempts"] == [
        {
            "model": "demo/demo-fast",
            "outcome": "ok",
            "reason": "carbon 0.02375 gCO2e per 1k tokens (0.05 kWh/M × 475 g/kWh × PUE 1)",
        }
    ]
    assert Category.objects.get(name="code").strategy == "carbon"
