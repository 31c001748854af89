"""Permissions for the staff (configuration) endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class IsStaff(BasePermission):
    """A staff API key, or a logged-in staff user (admin session)."""

    message = "This endpoint requires a staff API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user is not None and user.is_authenticated and getattr(user, "is_staff", False))
