"""Production settings pass ``check --deploy``, and the middleware that check cannot see does its job."""

from __future__ import annotations

import secrets
import subprocess

import pytest
from django.conf import settings
from django.middleware import clickjacking, csrf, security
from django.test import Client
from django.utils.module_loading import import_string

from tests.helpers import ROOT, django_env, python


def test_production_settings_pass_the_deploy_checks() -> None:
    env = django_env(
        PRODUCTION="true",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="api.example.com",
        SECURE_COOKIES="true",
        SECURE_SSL_REDIRECT="true",
        SECURE_HSTS_SECONDS="31536000",
        DEBUG="false",
    )
    result = subprocess.run(
        [python(), "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (3 silenced)." in result.stdout


def test_production_refuses_to_start_without_a_secret_key() -> None:
    env = django_env(PRODUCTION="true")
    env.pop("SECRET_KEY", None)
    result = subprocess.run(
        [python(), "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required when PRODUCTION=true" in result.stderr


@pytest.mark.parametrize(
    "django_class", [security.SecurityMiddleware, clickjacking.XFrameOptionsMiddleware, csrf.CsrfViewMiddleware]
)
def test_the_silenced_checks_are_covered_by_subclasses(django_class: type) -> None:
    installed = [import_string(path) for path in settings.MIDDLEWARE]
    assert any(issubclass(cls, django_class) for cls in installed), django_class


@pytest.mark.django_db
def test_pages_carry_the_security_headers_and_forms_need_csrf(admin_user: object) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.get("/admin/login/")
    assert (response["X-Frame-Options"], response["X-Content-Type-Options"], response["Referrer-Policy"]) == (
        "DENY",
        "nosniff",
        "same-origin",
    )
    refused = client.post("/admin/login/", {"username": "admin", "password": "password"})
    assert refused.status_code == 403  # no CSRF token
