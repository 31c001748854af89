"""spignosapi/snapshots.py: every snapshot can be read on an event loop right after a config change, without
the loop touching the database (Django refuses that: ``SynchronousOnlyOperation``, which was a 500).

Real PostgreSQL and Redis; each read runs in a coroutine on an event loop, as in an async view.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from django.core.cache import cache
from django.db import transaction
from django.urls import get_resolver
from pytest_django import Settings

from ledger.accounting import account
from ledger.buffer import UsageBuffer
from ledger.models import UsageRecord
from rag import usage as rag_usage
from routing.models import Category
from routing.seed import seed_defaults
from routing.selectors import routing_config
from routing.services import routing_changed
from spignosapi import loops, snapshots

pytestmark = pytest.mark.django_db(transaction=True)
T = TypeVar("T")


def every_snapshot() -> list[str]:
    """The names of every snapshot the platform defines (loading every view loads every module with one)."""
    get_resolver().url_patterns  # noqa: B018  (imports every urls module, so every view and selector)
    import spignosapi.websocket_urls  # noqa: F401  (the WebSocket routes)

    return sorted(snapshots.registry)


def test_the_registry_holds_the_platforms_snapshots() -> None:
    assert {"apikeys", "routing"} <= set(every_snapshot())


def on_a_loop(view: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return loops.run(view())


@pytest.fixture(autouse=True)
def closed_loops() -> Iterator[None]:
    yield
    loops.close_all()  # the loop's database threads close their connections


@pytest.fixture
def checked_every_second(settings: Settings) -> None:
    settings.SNAPSHOT_CHECK_SECONDS = 1.0  # the production default: loop readers share one refresh


@pytest.mark.parametrize("name", every_snapshot())
@pytest.mark.parametrize("interval", [1.0, 0.0], ids=["checked-every-second", "checked-on-every-read"])
def test_every_snapshot_is_read_on_the_loop_right_after_a_change(
    name: str, interval: float, settings: Settings
) -> None:
    settings.SNAPSHOT_CHECK_SECONDS = interval
    seed_defaults()
    snapshot = snapshots.registry[name]
    loaded = snapshot.get()
    snapshot.bump()  # a change, made by this process: its copy is due for a reload

    async def view() -> tuple[Any, Any, Any]:
        served = snapshot.get()  # synchronous code on the loop: serves what it has, reloads in a thread
        fresh = await snapshot.aget()
        return served, fresh, snapshot.get()

    served, fresh, after = on_a_loop(view)
    assert served is loaded
    assert fresh is not loaded and fresh == loaded  # reloaded, and nothing behind it had changed
    assert after is fresh


@pytest.mark.parametrize("name", every_snapshot())
def test_a_snapshot_never_loaded_is_loaded_for_a_reader_on_the_loop(name: str) -> None:
    seed_defaults()
    existing = snapshots.registry[name]
    fresh = snapshots.Snapshot(f"{name}-first-read", existing.loader)  # as in a process that just started

    async def view() -> tuple[Any, Any]:
        return fresh.get(), fresh.get(recheck=True)

    first, rechecked = on_a_loop(view)
    assert first == existing.get(recheck=True)
    assert rechecked is first  # its version had not moved: nothing to reload


def test_a_reader_on_the_loop_sees_a_new_category_once_the_refresh_it_started_is_done(
    checked_every_second: None,
) -> None:
    seed_defaults()
    assert "poetry" not in routing_config.get().categories
    Category.objects.create(name="poetry", keywords=["poem"])
    routing_changed()  # what the categories API and the admin call

    async def view() -> tuple[set[str], set[str], set[str]]:
        served = set(routing_config.get().categories)  # the old config; the refresh runs in a thread
        awaited = set((await routing_config.aget()).categories)  # joins that refresh
        return served, awaited, set(routing_config.get().categories)

    served, awaited, after = on_a_loop(view)
    assert "poetry" not in served
    assert "poetry" in awaited and "poetry" in after
    assert awaited - served == {"poetry"}


def test_embedding_usage_is_booked_on_the_loop_right_after_a_routing_change(monkeypatch: pytest.MonkeyPatch) -> None:
    # The 500 schemathesis found: POST /api/v1/embeddings after a routing change, booking its usage.
    buffer = UsageBuffer(background=False)  # written by the flush below, in this thread
    monkeypatch.setattr(rag_usage, "usage_buffer", buffer)
    seed_defaults()
    info = routing_config.get().models["demo/demo-embed"]
    routing_changed()

    async def view() -> None:
        rag_usage.embedding_usage_book(
            key_id=None,
            request_id="snapshot-test",
            endpoint="embeddings",
            model_id="demo/demo-embed",
            tokens=12,
            started=time.perf_counter(),
            user="u1",
            error="",
        )

    on_a_loop(view)
    assert buffer.flush() == 1
    row = UsageRecord.objects.get(request_id="snapshot-test")
    assert (row.model, row.provider, row.prompt_tokens, row.completion_tokens, row.status) == (
        "demo/demo-embed",
        "demo",
        12,
        0,
        "ok",
    )
    assert float(row.cost_usd) == pytest.approx(account(info, 12, 0).cost_usd, abs=1e-9)


def test_a_snapshot_named_by_a_writer_below_its_owner_reloads_here_at_once_and_elsewhere_once_committed() -> None:
    name = f"named-{uuid.uuid4().hex}"
    loads: list[int] = []

    def loader() -> int:
        loads.append(len(loads) + 1)
        return loads[-1]

    snapshot = snapshots.Snapshot(name, loader)
    assert snapshot.get() == 1
    told_before = cache.get(f"snapshot:{name}:version")
    with transaction.atomic():
        snapshots.snapshot_changed(name)
        assert snapshot.get() == 2  # this process: at once
        assert cache.get(f"snapshot:{name}:version") == told_before  # the others: not before the commit
    told = cache.get(f"snapshot:{name}:version")
    assert told is not None and told != told_before
    assert snapshot.get() == 3  # as after routing_changed(): the bump marks it due again, for the new version
    assert snapshot.get() == 3


def test_a_snapshot_this_process_never_made_is_still_told_to_the_others() -> None:
    name = f"elsewhere-{uuid.uuid4().hex}"
    with transaction.atomic():
        snapshots.snapshot_changed(name)
        assert cache.get(f"snapshot:{name}:version") is None
    assert len(cache.get(f"snapshot:{name}:version")) == 32
