"""The request path's speed-ups, fenced in one place.

Each module replaces a stock component that cost the hot path measurable CPU, keeps its behaviour, says in
its header what it replaces and what it gained, and has a test that runs the same inputs through the stock
component and through it and asserts the same outputs (``spignosapi/tests/test_fastpath_*.py``):

* ``handler`` — Django's ``ASGIHandler`` without a thread per request: request threads lent from a bounded
  pool on first synchronous work, Django's receivers sent where they matter.
* ``middleware`` — Django's and WhiteNoise's middleware, async-native: CPU-only hooks on the event loop.
* ``validation`` — DRF serializer validation with fields bound once per thread, and a fast path for valid
  bodies of plain JSON types (DRF itself answers anything else, so errors are DRF's).
* ``redis_client`` — a pipelined asyncio Redis client, one connection per process and loop, in place of
  redis-py's client and of the per-request cache connection.

Nothing else in the project needs to know these exist: they are installed by name (``spignosapi/asgi.py``,
``settings.MIDDLEWARE``) or sit behind an ordinary interface (``asyncviews.validated``, ``cache_redis``).
"""
