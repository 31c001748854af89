"""Outgoing webhooks (budget thresholds, incidents): where they go, how they are signed, how hard to try."""

from __future__ import annotations

from .env import env_float, env_int, env_list, env_secret

# Every event goes to each of these URLs (comma-separated); none set: no webhook is sent.
WEBHOOK_URLS = env_list("WEBHOOK_URLS", [])
# The receivers check the signature with it (Standard Webhooks: HMAC-SHA256 of "id.timestamp.body").
# None: deliveries go unsigned, and the README says receivers should then not trust them.
WEBHOOK_SECRET = env_secret("WEBHOOK_SECRET")
WEBHOOK_TIMEOUT_S = env_float("WEBHOOK_TIMEOUT_S", 10.0, minimum=0.1)
# A delivery answered with a 5xx, a 429 or not at all is tried again, with backoff, this many times.
WEBHOOK_MAX_RETRIES = env_int("WEBHOOK_MAX_RETRIES", 5, minimum=0, maximum=20)
