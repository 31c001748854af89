"""Channels: the layer lives on Redis so every web process and worker shares it."""

from __future__ import annotations

from .redis import REDIS_CHANNELS_URL

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 times socket reads out after 5 s by default, exactly as long as the layer's blocking
            # pop waits: a longer socket timeout keeps an idle consumer from failing with TimeoutError.
            "hosts": [{"address": REDIS_CHANNELS_URL, "socket_timeout": 30}],
            "capacity": 1000,
            "expiry": 60,
        },
    }
}
