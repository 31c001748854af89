"""API keys: only a SHA-256 hash of the key is stored, with a short prefix to recognise it by."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction

KEY_PREFIX = "spg-"
DISPLAY_PREFIX_LENGTH = 12
# A prefix names its key in URLs, so it is unique. A fresh key's is its first 12 characters; the few keys
# that shared theirs before prefixes had to be unique were told apart by a suffix (migration 0003).
PREFIX_MAX_LENGTH = 16
PREFIX_CHARS = "[-A-Za-z0-9_~]"  # the key's own alphabet (URL-safe base64), and ~ (migration 0003)

# A model pattern: a model id (``openai/gpt-4o-mini``), a glob of them (``openai/*``, ``*/llama-3*``) or a
# category's name (``code``: the models of its chain). Only ``*`` and ``?`` are wildcards: a ``[`` would be a
# character class that an admin typing a name never meant.
MODEL_PATTERN = re.compile(r"[A-Za-z0-9*?][A-Za-z0-9._:@+*?/-]*")
MODEL_PATTERN_MAX_LENGTH = 200
# No commas (the admin and createapikey separate tags by them), no control characters.
TAG = re.compile(r"[^\s,\x00-\x1f\x7f][^,\x00-\x1f\x7f]*")
TAG_MAX_LENGTH = 64
MAX_LIST_ITEMS = 100


def validate_model_patterns(value: Any) -> None:
    """A list of model patterns (see ``MODEL_PATTERN``); empty allows every model."""
    _validate_list(value, "model pattern", MODEL_PATTERN, MODEL_PATTERN_MAX_LENGTH)


def validate_tags(value: Any) -> None:
    """A list of free-form labels: no commas (the admin and ``createapikey`` separate them by commas)."""
    _validate_list(value, "tag", TAG, TAG_MAX_LENGTH)


def _validate_list(value: Any, what: str, form: re.Pattern[str], max_length: int) -> None:
    if not isinstance(value, list):
        raise ValidationError(f"Expected a list of {what}s.", code="invalid")
    if len(value) > MAX_LIST_ITEMS:
        raise ValidationError(f"At most {MAX_LIST_ITEMS} {what}s.", code="invalid")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > max_length or not form.fullmatch(item):
            raise ValidationError(f"{item!r} is not a valid {what}.", code="invalid")


def hash_key(raw_key: str) -> str:
    """Keys are 256-bit random strings, so a fast unsalted hash is enough to make a leaked table useless."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def new_secret() -> tuple[str, str, str]:
    """A fresh raw key with its display prefix and its hash: ``(raw, prefix, hashed)``."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    return raw, raw[:DISPLAY_PREFIX_LENGTH], hash_key(raw)


def _limit(help_text: str) -> models.PositiveIntegerField[int | None, int | None]:
    return models.PositiveIntegerField(null=True, blank=True, help_text=help_text)


class Team(models.Model):
    """A group of keys that share what belongs to the team: RAG collections, limits, allowed models.

    Its keys inherit its limits; a key that sets its own is held to the tighter of the two. Its requests and
    tokens per minute are counted once for the whole team (every key of it together).
    """

    name = models.SlugField(max_length=100, unique=True)
    rpm_limit = _limit("Requests per minute, all the team's keys together; empty = no team limit.")
    tpm_limit = _limit("Tokens per minute, all the team's keys together; empty = no team limit.")
    max_tokens_cap = _limit("Largest max_tokens its keys may ask for.")
    max_prompt_tokens = _limit("Largest prompt its keys may send.")
    max_parallel_requests = _limit("Requests each of its keys may have under way at once.")
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_model_patterns],
        help_text="Model ids, globs (openai/*) or category names its keys may use; empty = all.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        _bump_keys_on_commit()  # its keys carry its limits in the key table

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        deleted = super().delete(*args, **kwargs)
        _bump_keys_on_commit()
        return deleted


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=PREFIX_MAX_LENGTH, unique=True, editable=False, help_text="First characters of the key."
    )
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    # The secret a rotation replaced, accepted until ``previous_key_expires_at`` (the grace period).
    previous_hashed_key = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    previous_key_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys"
    )
    # PROTECT: a team that still has keys cannot vanish from under them (their access depends on it).
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="keys", help_text="At most one team."
    )
    is_staff = models.BooleanField(default=False, help_text="May call the staff (configuration) endpoints.")
    is_active = models.BooleanField(default=True, help_text="Unticked: the key is disabled (401 key_disabled).")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="From then on: 401 key_expired.")
    rpm_limit = _limit("Requests per minute; empty = the team's, else the default.")
    tpm_limit = _limit("Tokens per minute; empty = the team's, else the default.")
    max_tokens_cap = _limit("Largest max_tokens accepted.")
    max_prompt_tokens = _limit("Largest prompt accepted.")
    max_parallel_requests = _limit("Requests under way at once, across every process; empty = no limit.")
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_model_patterns],
        help_text="Model ids, globs (openai/*) or category names this key may use; empty = all (its team's).",
    )
    tags = models.JSONField(default=list, blank=True, validators=[validate_tags], help_text="Free-form labels.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        _bump_keys_on_commit()

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        deleted = super().delete(*args, **kwargs)
        _bump_keys_on_commit()
        return deleted


def _bump_keys_on_commit() -> None:
    """This process reloads its in-memory key table now; every other one once the change is committed."""
    from .selectors import active_keys

    active_keys.invalidate()
    transaction.on_commit(active_keys.bump)
