from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import Chunk, Collection, Document
from .tasks import index_collection


class DocumentInline(admin.TabularInline[Document, Collection]):
    model = Document
    fields = ["external_id", "title", "updated_at"]
    readonly_fields = ["updated_at"]
    extra = 0
    show_change_link = True


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin[Collection]):
    list_display = ["name", "owner", "public_read", "embedding_model", "status", "dimensions", "index_version"]
    list_filter = ["status", "public_read", "owner_team", "embedding_model"]
    search_fields = ["name", "description", "owner_team__name", "owner_key__name", "owner_key__prefix"]
    # Owner and sharing are edited here by staff: no owner at all makes a collection staff-owned.
    autocomplete_fields = ["owner_team", "owner_key"]
    filter_horizontal = ["shared_with_teams"]
    readonly_fields = ["dimensions", "status", "index_version", "indexed_at", "last_error", "created_at", "updated_at"]
    inlines = [DocumentInline]
    actions = ["reindex"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Collection]:
        return super().get_queryset(request).select_related("owner_team", "owner_key")

    @admin.display(description="owner")
    def owner(self, collection: Collection) -> str:
        return collection.owner_label

    @admin.action(description="Embed new chunks and rebuild the index")
    def reindex(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        for collection in queryset:
            index_collection.apply_async(args=[collection.pk], queue="default")
        self.message_user(request, f"Indexing queued for {queryset.count()} collection(s).", messages.SUCCESS)


class ChunkInline(admin.TabularInline[Chunk, Document]):
    model = Chunk
    fields = ["index", "start", "text"]
    readonly_fields = ["index", "start", "text"]
    extra = 0
    can_delete = False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin[Document]):
    list_display = ["external_id", "collection", "title", "updated_at"]
    list_select_related = ["collection__owner_team", "collection__owner_key"]  # a collection's name shows its owner
    list_filter = ["collection"]
    search_fields = ["external_id", "title", "text"]
    inlines = [ChunkInline]

    def save_model(self, request: HttpRequest, obj: Document, form: Any, change: bool) -> None:
        """An edited text is chunked again and re-indexed, like an ingest of the same id."""
        from .services import documents_store

        documents_store(
            collection=obj.collection,
            documents=[{"id": obj.external_id, "title": obj.title, "text": obj.text}],
        )
