"""``python -m bench.fastpath``: each speed-up of ``spignosapi/fastpath`` against the stock part it replaces.

In one process, no servers: the same work through the stock component and through ours, CPU time (every
thread of the process, ``time.process_time``) per operation, best of ``--rounds``:

* handler — ``GET /health`` (an async view) and ``GET /api/v1/status`` without a key (a DRF view: 401)
  through Django's ``ASGIHandler`` and through ``GatewayASGIHandler``, in-process over ASGI, 1 and 20 at a
  time (same middleware: ours);
* middleware — the same requests through our handler, with ``settings.MIDDLEWARE`` and with the stock
  classes it subclasses;
* validation — a chat-completions body through ``validated()`` and through ``ChatCompletionInput`` itself;
* redis — the admission-sized script and an MGET through the pipelined client and through redis-py's
  asyncio client (``RedisPyCalls``), 1 and 50 at a time.

Needs what the tests need: ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL`` (databases are not written: the
requests measured touch neither; Redis gets a few ``fastpath-bench:`` keys). A shared machine makes these
figures noisy: compare the two columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

Measure = Callable[[], Awaitable[None]]


def _cpu_per_op(run: Callable[[], None], ops: int, rounds: int) -> float:
    """Microseconds of process CPU per operation, best of ``rounds``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        run()
        best = min(best, (time.process_time() - start) / ops * 1e6)
    return best


def _row(name: str, stock: float, ours: float) -> str:
    return f"{name:<52} {stock:>10.1f} {ours:>10.1f} {stock / ours:>7.2f}x"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fastpath", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="measurements of each, the best kept (default 5)")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spignosapi.settings")
    import django

    django.setup()
    # A refused request logs a warning: both sides would pay for it, and it would drown the table.
    logging.getLogger("django.request").setLevel(logging.ERROR)
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler
    from django.test import override_settings

    from spignosapi import loops
    from spignosapi.fastpath.handler import GatewayASGIHandler
    from spignosapi.fastpath.redis_client import PipelinedRedis, RedisPyCalls, cache_redis
    from spignosapi.tests.test_fastpath_middleware import stock_middleware
    from tests.asgi import serve

    n, rounds = args.requests, args.rounds
    print(f"{'CPU µs per operation (best of ' + str(rounds) + ')':<52} {'stock':>10} {'ours':>10} {'gain':>8}")

    def requests(app: Any, path: str, concurrency: int) -> Callable[[], None]:
        async def batch() -> None:
            for _ in range(n // concurrency):
                await asyncio.gather(*(serve(app, "GET", path) for _ in range(concurrency)))

        return lambda: loops.run(batch())

    with override_settings(MIDDLEWARE=stock_middleware()):
        stock_middleware_app = GatewayASGIHandler()
    ours_app, django_app = GatewayASGIHandler(), ASGIHandler()
    for path in ("/health", "/api/v1/status"):
        loops.run(serve(ours_app, "GET", path))  # warm: URL resolver, templates, key table
        for concurrency in (1, 20):
            stock = _cpu_per_op(requests(django_app, path, concurrency), n, rounds)
            ours = _cpu_per_op(requests(ours_app, path, concurrency), n, rounds)
            print(_row(f"handler     GET {path}, {concurrency} at a time", stock, ours))
        stock = _cpu_per_op(requests(stock_middleware_app, path, 20), n, rounds)
        ours = _cpu_per_op(requests(ours_app, path, 20), n, rounds)
        print(_row(f"middleware  GET {path}, 20 at a time", stock, ours))

    _measure_validation(n, rounds)

    import redis.asyncio

    script = "return {redis.call('INCR', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('GET', KEYS[3])}"
    keys = [cache_redis.make_key(f"fastpath-bench:{name}") for name in ("count", "a", "b")]

    def commands(make_client: Callable[[], Any], concurrency: int) -> Callable[[], None]:
        async def batch() -> None:
            client = make_client()
            for _ in range(n // concurrency):
                await asyncio.gather(*(client.script(script, keys, []) for _ in range(concurrency)))
                await asyncio.gather(*(client.mget(keys[1:]) for _ in range(concurrency)))

        return lambda: loops.run(batch())

    async def fast_client() -> Any:
        return cache_redis.client()

    if not isinstance(loops.run(fast_client()), PipelinedRedis):
        sys.exit("the cache's Redis is not a plain redis:// URL: the fast client would be redis-py's")
    url = str(settings.CACHES["default"]["LOCATION"])
    redis_py = RedisPyCalls(redis.asyncio.Redis.from_url(url))
    for concurrency in (1, 50):
        stock = _cpu_per_op(commands(lambda: redis_py, concurrency), 2 * n, rounds)
        ours = _cpu_per_op(commands(cache_redis.client, concurrency), 2 * n, rounds)
        print(_row(f"redis       EVALSHA + MGET, {concurrency} at a time", stock, ours))
    cache_redis.sync_client().delete(*keys)
    loops.close_all()


def _measure_validation(n: int, rounds: int) -> None:
    from routing.serializers import ChatCompletionInput
    from spignosapi.fastpath.validation import validated

    body = {
        "model": "auto",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        "max_tokens": 64,
        "temperature": 0.2,
        "stream": False,
    }

    def drf() -> None:
        for _ in range(n):
            serializer = ChatCompletionInput(data=body)
            serializer.is_valid(raise_exception=True)
            dict(serializer.validated_data)

    def fast() -> None:
        for _ in range(n):
            validated(ChatCompletionInput, body)

    print(_row("validation  a chat-completions body", _cpu_per_op(drf, n, rounds), _cpu_per_op(fast, n, rounds)))


if __name__ == "__main__":
    main(sys.argv[1:])
