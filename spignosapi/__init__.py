"""spignosapi: a self-hosted LLM gateway on Django."""

from .celery import app as celery_app

__all__ = ["celery_app"]
