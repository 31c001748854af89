"""Automatic incidents: opened when a model fails, updated while it does, resolved when it recovers.

A model is *failing* when its last ``MONITORING_INCIDENT_AFTER_FAILURES`` probes failed in a row or its
circuit breaker is open (refusing traffic now). ``incidents_update`` (run after every probe run and every
beat tick, so an open breaker is seen without a probe) then:

* opens an incident for a failing model without one — unless a maintenance window covers it: the work was
  announced, so its failures are expected;
* posts a "still failing" update to an open one at most every ``MONITORING_INCIDENT_UPDATE_S``;
* resolves the open one of a model that is no longer failing and whose last probe succeeded in time.

Opening and resolving announce ``incident.opened`` / ``incident.resolved`` through ``spignosapi.webhooks``
(after the commit). Two workers may evaluate the same failures at once: the database allows one open
automatic incident per model, so the second insert fails, is dropped, and announces nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction

from routing.models import LLMModel
from spignosapi import webhooks

from . import selectors
from .models import Bucket, Incident, IncidentUpdate
from .states import Evidence, consecutive_failures, describe_failure

logger = logging.getLogger(__name__)


def _failure(evidence: Evidence) -> tuple[Incident.Cause, str] | None:
    """Why the model is failing (cause, words), or None when it is not."""
    if evidence.breaker_error is not None:
        detail = f": {evidence.breaker_error}" if evidence.breaker_error else ""
        return Incident.Cause.BREAKER, f"Circuit breaker open{detail}"
    failures = consecutive_failures(evidence.recent)
    if failures >= settings.MONITORING_INCIDENT_AFTER_FAILURES:
        return Incident.Cause.PROBES, f"{failures} consecutive probe failures: {describe_failure(evidence.recent[0])}"
    return None


def incidents_update(*, now: datetime, model_pks: Sequence[int] | None = None) -> None:
    """Open, update and resolve the automatic incidents of these models (default: every monitored one)."""
    if model_pks is None:
        models = {row.model.pk: row.model for row in selectors.monitored_rows()}
    else:
        models = {m.pk: m for m in LLMModel.objects.filter(pk__in=model_pks).select_related("provider")}
    pks = list(models)
    evidence = selectors.model_evidence(pks, now=now)
    open_ones = {
        i.model_id: i for i in Incident.objects.filter(model_id__in=pks, automatic=True, resolved_at__isnull=True)
    }
    for pk in pks:
        failure = _failure(evidence[pk])
        incident = open_ones.get(pk)
        if failure is not None and incident is None and evidence[pk].maintenance is None:
            incident_open(model=models[pk], cause=failure[0], reason=failure[1], now=now)
        elif failure is not None and incident is not None:
            _still_failing(incident, failure[1], now=now)
        elif failure is None and incident is not None and _recovered(evidence[pk]):
            incident_resolve(incident, message="Probes succeed again.", now=now)


def _recovered(evidence: Evidence) -> bool:
    """Its last probe answered in time (a 429 says nothing either way: the incident stays open)."""
    return bool(evidence.recent) and evidence.recent[0].ok and evidence.recent[0].status != Bucket.UNKNOWN


def incident_open(*, model: LLMModel, cause: Incident.Cause, reason: str, now: datetime) -> Incident | None:
    """Open the automatic incident of ``model``; None when one is open already (another worker's)."""
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                model=model,
                title=f"{model.model_id} is down",
                cause=cause,
                automatic=True,
                started_at=now,
                updated_at=now,
            )
            IncidentUpdate.objects.create(
                incident=incident, status=IncidentUpdate.Status.INVESTIGATING, message=reason, created_at=now
            )
            webhooks.notify("incident.opened", selectors.incident_payload(incident))
    except IntegrityError:
        logger.info("incident of %s already open", model.model_id)
        return None
    logger.warning("incident %s opened: %s: %s", incident.pk, model.model_id, reason)
    return incident


def _still_failing(incident: Incident, reason: str, *, now: datetime) -> None:
    if now - incident.updated_at < timedelta(seconds=settings.MONITORING_INCIDENT_UPDATE_S):
        return
    with transaction.atomic():
        # Locked and read again: two workers past the same interval post one update between them.
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        if locked.resolved_at is not None or now - locked.updated_at < timedelta(
            seconds=settings.MONITORING_INCIDENT_UPDATE_S
        ):
            return
        IncidentUpdate.objects.create(
            incident=locked, status=IncidentUpdate.Status.IDENTIFIED, message=f"Still failing. {reason}", created_at=now
        )
        Incident.objects.filter(pk=locked.pk).update(updated_at=now)


def incident_resolve(incident: Incident, *, message: str, now: datetime) -> bool:
    """Resolve an open incident with a last update; False when it was resolved already (by another worker)."""
    with transaction.atomic():
        resolved = Incident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(
            resolved_at=now, updated_at=now
        )
        if not resolved:
            return False
        IncidentUpdate.objects.create(
            incident=incident, status=IncidentUpdate.Status.RESOLVED, message=message, created_at=now
        )
        incident.refresh_from_db()
        webhooks.notify("incident.resolved", selectors.incident_payload(incident))
    logger.info("incident %s resolved", incident.pk)
    return True
