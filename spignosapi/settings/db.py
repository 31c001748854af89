"""Database: ``DATABASE_URL`` (PostgreSQL through psycopg 3), else SQLite under var/.

PostgreSQL connections come from a bounded pool per process (Django's native pool, psycopg_pool): a thread
borrows a connection for a request or a call and gives it back at its end, and a burst waits for one instead
of opening one per thread. What a deployment needs from PostgreSQL's ``max_connections`` is the sum over its
processes of ``DB_POOL_MAX_SIZE`` (README, "Database connections", has the arithmetic for docker compose).
"""

from __future__ import annotations

import dj_database_url

from .base import VAR_DIR
from .env import env_bool, env_float, env_int, env_str

# Connections per process: never more than DB_POOL_MAX_SIZE; DB_POOL_MIN_SIZE stay open when idle.
DB_POOL_MIN_SIZE = env_int("DB_POOL_MIN_SIZE", 1, minimum=0)
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 10, minimum=max(1, DB_POOL_MIN_SIZE))
# How long a thread waits for a free connection before the request is answered 503 database_unavailable.
DB_POOL_TIMEOUT = env_float("DB_POOL_TIMEOUT", 10.0, minimum=0.1)
# Threads that use those connections. Each event loop's executor, where async views and tasks run their ORM
# calls (spignosapi/loops.py): more than DB_POOL_MAX_SIZE would only wait for connections.
DB_THREADS = env_int("DB_THREADS", 8, minimum=1)
# A web process's request threads (spignosapi/fastpath/handler.py): one per request with synchronous work (DRF
# views, the admin, session auth), kept until the request ends or its response starts streaming; past
# REQUEST_THREADS a request's synchronous work waits for one. REQUEST_THREADS_IDLE are kept for the next.
REQUEST_THREADS = env_int("REQUEST_THREADS", 64, minimum=1)
REQUEST_THREADS_IDLE = env_int("REQUEST_THREADS_IDLE", 16, minimum=0)

_url = env_str("DATABASE_URL")
if _url:
    # DB_POOL=false (e.g. behind a pgbouncer in transaction mode): a connection per thread, kept
    # DB_CONN_MAX_AGE seconds, as Django does without a pool.
    _pooled = env_bool("DB_POOL", True)
    _db = dj_database_url.parse(
        _url,
        conn_max_age=0 if _pooled else env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,  # with the pool: the pool checks a connection before lending it
    )
    if _pooled:
        _db["ENGINE"] = "spignosapi.db"  # Django's backend; answers at once while PostgreSQL is unreachable
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": DB_POOL_MIN_SIZE,
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": DB_POOL_TIMEOUT,
            "name": "spignosapi",
        }
    DATABASES = {"default": _db}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "db.sqlite3"),
            # Several processes (web, worker, beat) share the file: wait for locks instead of failing.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
