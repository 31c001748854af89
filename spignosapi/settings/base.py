"""Core Django settings: apps, middleware, templates, static files, security."""

from __future__ import annotations

import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Everything the embedded defaults create (SQLite, embedded Redis, generated secret key) lives here.
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
PORT = env_int("PORT", 8000, minimum=1, maximum=65535)


def _secret_key() -> str:
    key = env_secret("SECRET_KEY")
    if key:
        return key
    if env_bool("PRODUCTION", False):
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required when PRODUCTION=true")
    # Embedded default: one random key per checkout, kept under var/ so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "adminsortable2",
    "auditlog",
    "spignosapi",
    "accounts",
    "ledger",
    "budgets",
    "routing",
    "energy",
    "jobs",
    "monitoring",
    "rag",
    "audit",
]

# Django's usual stack, each one async-native (spignosapi/fastpath/middleware.py): under ASGI, Django's own
# classes send every hook to a single sync thread, which serialised the gateway's requests.
MIDDLEWARE = [
    "spignosapi.api.middleware.RequestIDMiddleware",
    "spignosapi.api.middleware.PathGuardMiddleware",
    "spignosapi.fastpath.middleware.SecurityMiddleware",
    "spignosapi.fastpath.middleware.WhiteNoiseMiddleware",
    "spignosapi.fastpath.middleware.SessionMiddleware",
    "spignosapi.fastpath.middleware.CommonMiddleware",
    "spignosapi.fastpath.middleware.CsrfViewMiddleware",
    "spignosapi.fastpath.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditActorMiddleware",
    "spignosapi.fastpath.middleware.MessageMiddleware",
    "spignosapi.fastpath.middleware.XFrameOptionsMiddleware",
]

# Django's deploy checks look for its own class paths; the stack above holds subclasses of each of them
# (security, clickjacking, CSRF), which spignosapi/tests/test_deploy.py asserts, with the headers they send.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "spignosapi.urls"
ASGI_APPLICATION = "spignosapi.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' static folders, so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Request bodies above this are refused with 413 (contract section 2).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 2 * 1024 * 1024, minimum=1024)
# JSON bodies nested deeper than this are refused with 400 (100 is the default of Ruby's JSON parser;
# above ~900 Python's own decoder runs out of stack, hence the maximum).
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 100, minimum=1, maximum=500)

# Security headers; production turns on HTTPS-only behaviour through the environment.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None

LOGIN_URL = "/admin/login/"
