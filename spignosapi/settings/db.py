"""Database: ``DATABASE_URL`` (PostgreSQL through psycopg 3), else SQLite under var/."""

from __future__ import annotations

import dj_database_url

from .base import VAR_DIR
from .env import env_int, env_str

_url = env_str("DATABASE_URL")
if _url:
    DATABASES = {
        "default": dj_database_url.parse(
            _url,
            conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
            conn_health_checks=True,
        )
    }
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
