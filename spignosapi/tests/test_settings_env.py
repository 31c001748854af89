"""The environment readers fail loudly on bad values instead of falling back silently."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from spignosapi.settings.env import env_bool, env_float, env_int, env_list, env_secret
from spignosapi.settings.redis import redis_db_url


def test_env_bool_reads_the_usual_spellings() -> None:
    assert env_bool("X", environ={"X": "yes"}) is True
    assert env_bool("X", environ={"X": "0"}) is False
    assert env_bool("X", True, environ={}) is True


def test_env_bool_rejects_anything_else() -> None:
    with pytest.raises(ImproperlyConfigured, match="X must be a boolean"):
        env_bool("X", environ={"X": "maybe"})


def test_env_int_rejects_text_and_out_of_range() -> None:
    with pytest.raises(ImproperlyConfigured, match="PORT must be an integer, got 'eighty'"):
        env_int("PORT", 8000, environ={"PORT": "eighty"})
    with pytest.raises(ImproperlyConfigured, match="between 1 and 65535"):
        env_int("PORT", 8000, minimum=1, maximum=65535, environ={"PORT": "70000"})
    assert env_int("PORT", 8000, environ={"PORT": "9000"}) == 9000


def test_env_float_rejects_nan() -> None:
    with pytest.raises(ImproperlyConfigured):
        env_float("F", 1.0, environ={"F": "nan"})


def test_env_list_splits_and_trims() -> None:
    assert env_list("H", [], environ={"H": " a, b ,,c"}) == ["a", "b", "c"]


def test_env_secret_reads_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    assert env_secret("SECRET_KEY", environ={"SECRET_KEY_FILE": str(secret)}) == "s3cret"


def test_env_secret_refuses_both_forms_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_secret("S", environ={"S": "a", "S_FILE": "/x"})
    with pytest.raises(ImproperlyConfigured, match="S_FILE: cannot read"):
        env_secret("S", environ={"S_FILE": str(tmp_path / "missing")})


def test_redis_db_url_offsets_the_database_number() -> None:
    assert redis_db_url("redis://127.0.0.1:6379/8", 3) == "redis://127.0.0.1:6379/11"
    assert redis_db_url("redis://:pw@host:1", 2) == "redis://:pw@host:1/2"
