"""The gateway's hot-path shortcuts give exactly what the slow paths give.

* ``validated()``'s fast path returns DRF's ``validated_data`` for every body it accepts (and leaves every
  other body, so every error, to DRF).
* The pipelined Redis client keeps each reply with its command, under concurrency, errors and reconnects.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from django.core.cache import cache

from jobs.serializers import GenerateAsyncInput
from routing.serializers import ChatCompletionInput, GenerateInput
from spignosapi.fastpath.redis_client import PipelinedRedis, ReplyError, cache_redis
from spignosapi.fastpath.validation import _plan_for

VALUES: list[Any] = [
    None, "", " ", "x", " hi ", "a\x00b", "\ud800", "ok-slug", "bad slug", "x" * 300, 0, 1, -1, 2, 3, 1.5, 0.0,
    2.0000001, True, False, [], [1], {}, {"a": 1}, "keywords", "llm", "semantic", "nope", 10**7, 1e308, [None],
    [{"role": "user", "content": "hi"}], [{"role": "bogus", "content": "hi"}], [{"role": "user"}],
    [{"role": "assistant", "content": None}], ["a", "b"], ["a"] * 5, "auto", "none", {"type": "function"},
    [{"type": "function", "function": {"name": "f"}}], [{"type": "x"}], [{}], {"include_usage": True},
]  # fmt: skip
GENERATE_FIELDS = ["prompt", "system", "temperature", "top_p", "max_tokens", "user_id", "category", "model",
                   "stream", "route_mode", "priority"]  # fmt: skip
CHAT_FIELDS = ["model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "stop",
               "tools", "tool_choice", "stream", "stream_options", "user"]  # fmt: skip


def drf(serializer_class: Any, data: dict[str, Any]) -> dict[str, Any] | None:
    serializer = serializer_class(data=data)
    return dict(serializer.validated_data) if serializer.is_valid() else None


@pytest.mark.parametrize(
    "serializer_class, fields, base",
    [
        (GenerateInput, GENERATE_FIELDS, {"prompt": "hello"}),
        (GenerateAsyncInput, GENERATE_FIELDS, {"prompt": "hello"}),
        (ChatCompletionInput, CHAT_FIELDS, {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
    ],
)
def test_the_fast_validation_agrees_with_drf(serializer_class: Any, fields: list[str], base: dict[str, Any]) -> None:
    plan = _plan_for(serializer_class)
    assert plan is not None
    rng = random.Random(7)
    fast = 0
    for _ in range(1500):
        data = dict(base)
        for name in rng.sample(fields, rng.randint(0, 4)):
            if rng.random() < 0.2:
                data.pop(name, None)
            else:
                data[name] = rng.choice(VALUES)
        result = plan.validate(data)
        if result is not None:
            fast += 1
            assert result == drf(serializer_class, data), data
    assert fast > 200  # the common shapes do take the fast path
    assert plan.validate(base) == drf(serializer_class, base)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_pipelined_client_keeps_every_reply_with_its_command() -> None:
    cache.delete_many(["hot:a", "hot:b"])

    async def scenario() -> None:
        client = cache_redis.client()
        assert isinstance(client, PipelinedRedis)
        script = "return {redis.call('INCRBY', KEYS[1], ARGV[1]), ARGV[2], false}"
        replies = await asyncio.gather(
            *(client.script(script, [cache_redis.make_key("hot:a")], [i, f"é{i}"]) for i in range(1, 101))
        )
        assert [r[1] for r in replies] == [f"é{i}".encode() for i in range(1, 101)]
        assert replies[-1][0] == sum(range(1, 101)) and replies[-1][2] is None
        with pytest.raises(ReplyError, match="boom"):
            await client.script("return redis.error_reply('boom')", [], [])
        # A script Redis has never seen is sent whole (EVALSHA's NOSCRIPT), then by its hash.
        fresh = f"return '{random.random()}'"
        assert await client.script(fresh, [], []) == await client.script(fresh, [], [])
        assert await client.mget([cache_redis.make_key("hot:a"), cache_redis.make_key("hot:b")]) == [b"5050", None]
        # A lost connection fails what was in flight; the next command reconnects.
        assert client._pipe is not None and client._pipe.transport is not None
        client._pipe.transport.abort()
        await asyncio.sleep(0)
        assert (await client.mget([cache_redis.make_key("hot:a")])) == [b"5050"]

    run(scenario())
    assert cache.get("hot:a") == 5050  # the cache reads what the client wrote, under the same key
