from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("embeddings", api.embeddings_view, name="embeddings"),
    path("embeddings/batches", api.BatchesView.as_view(), name="embeddings-batches"),
    path("embeddings/batches/<uuid:batch_id>", api.BatchDetailView.as_view(), name="embeddings-batch"),
    path("rag", api.rag_view, name="rag"),
    path("rag/collections", api.CollectionsView.as_view(), name="rag-collections"),
    path("rag/collections/<collection:name>", api.CollectionDetailView.as_view(), name="rag-collection"),
    path("rag/collections/<collection:name>/documents", api.DocumentsView.as_view(), name="rag-documents"),
    path(
        "rag/collections/<collection:name>/documents/<document:document_id>",
        api.DocumentDetailView.as_view(),
        name="rag-document",
    ),
]
