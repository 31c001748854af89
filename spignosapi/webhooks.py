"""Outgoing webhooks: an event posted to every URL of ``WEBHOOK_URLS``, signed, tried again until delivered.

One place for every event the platform announces (a budget's soft threshold crossed, an incident opened or
resolved): ``notify(event, data)``. The format is Standard Webhooks (standardwebhooks.com), so a receiver can
check deliveries with that project's libraries instead of code of its own:

* body ``{"type": <event>, "timestamp": <ISO 8601>, "data": {...}}``;
* headers ``webhook-id`` (the same on every try of one delivery: receivers drop duplicates by it),
  ``webhook-timestamp`` (Unix seconds of this try) and ``webhook-signature: v1,<base64 HMAC-SHA256 of
  "id.timestamp.body">``, keyed with ``WEBHOOK_SECRET`` (a ``whsec_<base64>`` secret is decoded as the spec
  says; any other string is used as its UTF-8 bytes).

Delivery runs on a Celery worker, after the caller's transaction commits (an incident rolled back is never
announced): a 2xx ends it; a 5xx, 408, 429 or a network error is tried again with a growing delay, up to
``WEBHOOK_MAX_RETRIES`` times; any other 4xx is the receiver refusing it, and trying again would not help.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

_RETRYABLE_STATUSES = frozenset({408, 429})
_SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    if secret.startswith(_SECRET_PREFIX):
        return base64.b64decode(secret.removeprefix(_SECRET_PREFIX))
    return secret.encode("utf-8")


def signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value for one try of a delivery."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def notify(event: str, data: Mapping[str, Any]) -> str | None:
    """Announce ``event`` to every configured URL once the current transaction commits; the delivery id.

    None when no URL is configured. Never raises because of the broker: an event that cannot be queued is
    logged (it is lost; the state it announces is still in the database and the API).
    """
    urls: list[str] = list(settings.WEBHOOK_URLS)
    if not urls:
        return None
    delivery_id = f"msg_{uuid.uuid4().hex}"
    body = json.dumps(
        {"type": event, "timestamp": datetime.now(UTC).isoformat(), "data": dict(data)},
        separators=(",", ":"),
        default=str,
    )

    def enqueue() -> None:
        for url in urls:
            try:
                deliver.apply_async(args=[url, delivery_id, body], queue="default")
            except Exception:  # the broker is down: say so, and do not fail the change being announced
                logger.exception("webhook %s (%s) could not be queued", event, delivery_id)

    transaction.on_commit(enqueue)
    return delivery_id


def post(url: str, delivery_id: str, body: str) -> int:
    """One try: the receiver's HTTP status (0 when it could not be reached)."""
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "webhook-id": delivery_id, "webhook-timestamp": str(timestamp)}
    secret: str | None = settings.WEBHOOK_SECRET
    if secret:
        headers["webhook-signature"] = signature(secret, delivery_id, timestamp, body.encode("utf-8"))
    request = urllib.request.Request(url, data=body.encode("utf-8"), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=settings.WEBHOOK_TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ValueError):
        return 0


def _retryable(status: int) -> bool:
    return status == 0 or status >= 500 or status in _RETRYABLE_STATUSES


@shared_task(name="spignosapi.webhooks.deliver", bind=True, ignore_result=True, max_retries=None)
def deliver(task: Task, url: str, delivery_id: str, body: str) -> None:
    status = post(url, delivery_id, body)
    if 200 <= status < 300:
        return
    retries: int = task.request.retries
    if not _retryable(status) or retries >= settings.WEBHOOK_MAX_RETRIES:
        # The URL may carry a token in its query string: log the host only.
        host = urllib.parse.urlsplit(url).hostname
        logger.warning("webhook %s to %s given up after %d tries (status %s)", delivery_id, host, retries + 1, status)
        return
    raise task.retry(countdown=min(2 ** (retries + 1), 300))
