"""Collections of documents, cut into chunks whose vectors feed one FAISS index per collection.

The vectors are stored with the chunks, so an index can be rebuilt at any time without calling the
embedding model again; the index file on disk is a cache of them, named by ``index_version``.

A collection has one owner: a team (when the key that created it had one), a key, or - neither set - staff.
Who may read and write it is decided in ``rag.selectors``.
"""

from __future__ import annotations

import uuid

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class Collection(models.Model):
    class Status(models.TextChoices):
        EMPTY = "empty"
        INDEXING = "indexing"
        READY = "ready"
        FAILED = "failed"

    name = models.SlugField(max_length=100, help_text="Unique per owner: two teams may both have `docs`.")
    # PROTECT: deleting a team or key must not delete the documents it owns, nor hand them to someone else.
    owner_team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="rag_collections"
    )
    owner_key = models.ForeignKey(
        "accounts.ApiKey",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rag_collections",
        help_text="Set when a key without a team created it. No owner at all: staff-owned.",
    )
    shared_with_teams = models.ManyToManyField(
        "accounts.Team", blank=True, related_name="rag_collections_shared", help_text="Their keys may query it."
    )
    public_read = models.BooleanField(default=False, help_text="Every key may query it (never ingest).")
    # Names its index files: a collection recreated under the same name (or pk, after a database restore)
    # never picks up another one's stale index.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    description = models.CharField(max_length=300, blank=True)
    embedding_model = models.CharField(max_length=260, help_text="The model id that embeds its chunks and queries.")
    dimensions = models.PositiveIntegerField(null=True, blank=True, help_text="Vector size, known after indexing.")
    chunk_size = models.PositiveIntegerField(default=800, validators=[MinValueValidator(50)])
    chunk_overlap = models.PositiveIntegerField(default=120)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.EMPTY)
    index_version = models.PositiveIntegerField(default=0, help_text="Bumped by every index build.")
    indexed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(owner_team__isnull=True) | Q(owner_key__isnull=True), name="collection_at_most_one_owner"
            ),
            models.UniqueConstraint(
                fields=["owner_team", "name"],
                condition=Q(owner_team__isnull=False),
                name="unique_collection_per_team",
            ),
            models.UniqueConstraint(
                fields=["owner_key", "name"], condition=Q(owner_key__isnull=False), name="unique_collection_per_key"
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(owner_team__isnull=True, owner_key__isnull=True),
                name="unique_staff_collection",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner_label})"

    @property
    def owner_label(self) -> str:
        """How the API names the owner (and how ``?owner=`` selects it): ``team:<name>``, ``key:<prefix>``,
        ``staff``."""
        if self.owner_team is not None:
            return f"team:{self.owner_team.name}"
        if self.owner_key is not None:
            return f"key:{self.owner_key.prefix}"
        return "staff"


class Document(models.Model):
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    external_id = models.CharField(max_length=200, help_text="The document's id as the client named it.")
    title = models.CharField(max_length=300, blank=True)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["collection", "external_id"]
        constraints = [
            models.UniqueConstraint(fields=["collection", "external_id"], name="unique_document_per_collection")
        ]

    def __str__(self) -> str:
        return f"{self.collection.name}/{self.external_id}"


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField(help_text="Position in its document, from 0.")
    start = models.PositiveIntegerField(help_text="Offset of its first character in the document.")
    text = models.TextField()
    # float32, little-endian, L2-normalised; empty until the collection's model has embedded it.
    embedding = models.BinaryField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["document", "index"]
        constraints = [models.UniqueConstraint(fields=["document", "index"], name="unique_chunk_index")]

    def __str__(self) -> str:
        return f"{self.document}#{self.index}"


class EmbeddingBatch(models.Model):
    """A large embedding request, embedded by a Celery worker (``POST /api/v1/embeddings/batches``)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL)
    model = models.CharField(max_length=260)
    inputs = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    dimensions = models.PositiveIntegerField(null=True, blank=True)
    # float32 rows, little-endian, L2-normalised, in input order.
    vectors = models.BinaryField(null=True, blank=True, editable=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    error = models.JSONField(null=True, blank=True)
    deliveries = models.PositiveSmallIntegerField(default=0, help_text="How many times a worker started it.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.pk} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED
