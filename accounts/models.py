"""API keys: only a SHA-256 hash of the key is stored, with a short prefix to recognise it by."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import models, transaction

KEY_PREFIX = "spg-"
DISPLAY_PREFIX_LENGTH = 12


def hash_key(raw_key: str) -> str:
    """Keys are 256-bit random strings, so a fast unsalted hash is enough to make a leaked table useless."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def new_secret() -> tuple[str, str, str]:
    """A fresh raw key with its display prefix and its hash: ``(raw, prefix, hashed)``."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    return raw, raw[:DISPLAY_PREFIX_LENGTH], hash_key(raw)


class Team(models.Model):
    """A group of keys that share what belongs to the team (RAG collections now; budgets and limits later)."""

    name = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=DISPLAY_PREFIX_LENGTH, editable=False, help_text="First characters of the key."
    )
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys"
    )
    # PROTECT: a team that still has keys cannot vanish from under them (their access depends on it).
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="keys", help_text="At most one team."
    )
    is_staff = models.BooleanField(default=False, help_text="May call the staff (configuration) endpoints.")
    is_active = models.BooleanField(default=True)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute; empty = default.")
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute; empty = default.")
    max_tokens_cap = models.PositiveIntegerField(null=True, blank=True, help_text="Largest max_tokens accepted.")
    max_prompt_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Largest prompt accepted.")
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
