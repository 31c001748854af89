"""Channels: the layer lives on Redis so every web process and worker shares it."""

from __future__ import annotations

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from .redis import REDIS_CHANNELS_URL

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 times socket reads out after 5 s by default, exactly as long as the layer's blocking
            # pop waits: a longer socket timeout keeps an idle consumer from failing with TimeoutError.
            # After a Redis restart a pooled connection is dead: pinged when idle for 10 s, and a command that
            # meets a broken one is tried again on a new connection (0.1, 0.2, 0.4 s) instead of failing.
            "hosts": [
                {
                    "address": REDIS_CHANNELS_URL,
                    "socket_timeout": 30,
                    "health_check_interval": 10,
                    "retry": Retry(ExponentialBackoff(cap=1, base=0.1), 3),
                }
            ],
            "capacity": 1000,
            "expiry": 60,
        },
    }
}
