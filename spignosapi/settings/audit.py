"""The audit log (django-auditlog; the audited models and the actor: the ``audit`` app)."""

from __future__ import annotations

# Before/after as JSON values (numbers stay numbers, null stays null) rather than auditlog's strings.
AUDITLOG_STORE_JSON_CHANGES = True
# A foreign key's change reads as the object it names ("team": ["ml", "research"]), not its row id.
AUDITLOG_USE_FK_STRING_REPRESENTATION = True
# One request's entries share its X-Request-ID (a chain rewrite is several rows, one change).
AUDITLOG_CID_GETTER = "audit.actors.current_request_id"
