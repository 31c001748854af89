"""``/status/feed/``: the public incidents as an Atom feed, one entry per incident, updated with each update."""

from __future__ import annotations

from datetime import datetime

from django.contrib.syndication.views import Feed
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.feedgenerator import Atom1Feed
from django.utils.html import format_html_join

from .models import Incident
from .selectors import public_incidents

# Entries in the feed, newest first.
FEED_INCIDENTS = 50


class IncidentsFeed(Feed[Incident, None]):
    feed_type = Atom1Feed
    title = "spignosapi status: incidents"
    subtitle = "Incidents of the models on the public status page, with their updates."
    # Atom requires an author on the feed when its entries have none (RFC 4287, 4.1.1).
    author_name = "spignosapi status"

    def link(self) -> str:
        return reverse("status-page")

    def items(self) -> QuerySet[Incident]:
        return public_incidents()[:FEED_INCIDENTS]

    def item_title(self, item: Incident) -> str:
        return f"{item.title} (resolved)" if item.resolved_at else item.title

    def item_description(self, item: Incident) -> str:
        # The timeline, newest first, as readers show an entry's content.
        updates = sorted(item.updates.all(), key=lambda u: (u.created_at, u.pk), reverse=True)
        return str(
            format_html_join(
                "",
                "<p><strong>{}</strong> ({} UTC): {}</p>",
                ((u.status.title(), f"{u.created_at:%Y-%m-%d %H:%M}", u.message) for u in updates),
            )
        )

    def item_link(self, item: Incident) -> str:
        return f"{reverse('status-page')}#incident-{item.pk}"

    def item_pubdate(self, item: Incident) -> datetime:
        return item.started_at

    def item_updateddate(self, item: Incident) -> datetime:
        return item.updated_at
