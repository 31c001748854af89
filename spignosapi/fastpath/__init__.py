"""The request path's speed-ups, fenced in one place.

Each module replaces one stock component that cost the hot path measurable CPU, says in its header what it
replaces and what it gained, and has a test that runs the same inputs through the stock component and
through it and asserts the same outputs:

* ``redis_client`` — the pipelined asyncio Redis client, in place of redis-py's (and of the per-request cache
  connection).
"""
