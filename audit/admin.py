"""The audit log in the admin: read-only, with the actor (a user, or an API key by name and prefix) and resets."""

from __future__ import annotations

from auditlog.admin import LogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin

from .selectors import entry_action, entry_actor

admin.site.unregister(LogEntry)


@admin.register(LogEntry)
class AuditEntryAdmin(LogEntryAdmin):
    """auditlog's own (no add, change or delete), showing our actor and the reset action."""

    list_display = ["created", "resource_url", "action_name", "msg_short", "actor_name", "cid_url"]
    search_fields = [*LogEntryAdmin.search_fields, "additional_data__actor__name", "additional_data__actor__prefix"]
    readonly_fields = [*LogEntryAdmin.readonly_fields, "action_name", "actor_name"]
    fieldsets = [
        (None, {"fields": ["created", "actor_name", "resource_url", "cid"]}),
        ("Changes", {"fields": ["action_name", "msg"]}),
    ]

    @admin.display(description="action", ordering="action")
    def action_name(self, obj: LogEntry) -> str:
        return entry_action(obj)

    @admin.display(description="actor")
    def actor_name(self, obj: LogEntry) -> str:
        actor = entry_actor(obj)
        if actor is None:
            return "system"
        if actor["type"] == "key":
            owner = f", owner {actor['user']}" if actor["user"] else ""
            return f"key {actor['name']} ({actor['prefix']}…{owner})"
        return str(actor["name"])
