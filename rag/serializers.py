"""Input and output serializers of the embeddings and RAG endpoints."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from llm.tokens import DEFAULT_ENCODING, UnknownTokenError, decode_tokens
from routing.serializers import GenerateInput, MetaOutput


class EmbeddingsInput(serializers.Serializer[Any]):
    input = serializers.JSONField(
        help_text="A string, a list of strings, a list of token ids (cl100k_base) or a list of such lists."
    )
    model = serializers.CharField(required=False, max_length=260, help_text="Default: EMBEDDINGS_DEFAULT_MODEL.")
    encoding_format = serializers.ChoiceField(choices=["float", "base64"], default="float")
    dimensions = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Fewer dimensions than the model gives: its vectors truncated and re-normalised, as OpenAI "
        "shortens text-embedding-3's. More than it gives: 400.",
    )
    user = serializers.CharField(required=False, allow_blank=True, max_length=200)
    token_ids = True  # OpenAI's shapes of token ids are accepted as input

    def max_inputs(self) -> int:
        return int(settings.EMBEDDINGS_MAX_INPUTS)

    def validate_input(self, value: Any) -> list[str]:
        """The texts to embed; token ids are decoded to their text (the models we reach take text)."""
        texts = _embedding_texts(value, token_ids=self.token_ids)
        if not texts:
            raise serializers.ValidationError("At least one input is required.", code="empty")
        if any(not t for t in texts):
            raise serializers.ValidationError("Inputs must not be empty strings.", code="empty_string")
        if len(texts) > self.max_inputs():
            raise serializers.ValidationError(
                f"At most {self.max_inputs()} inputs per request.", code="too_many_inputs"
            )
        return texts


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _embedding_texts(value: Any, *, token_ids: bool) -> list[str]:
    """OpenAI's four shapes of ``input``: a string, strings, one token array, token arrays (not mixed)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise serializers.ValidationError(_INPUT_SHAPES if token_ids else _TEXT_SHAPES, code="invalid_type")
    if all(isinstance(item, str) for item in value):
        return list(value)
    if not token_ids:
        raise serializers.ValidationError(_TEXT_SHAPES, code="invalid_type")
    if all(_is_token(item) for item in value):
        return [_decoded(value)]
    if all(isinstance(item, list) and all(_is_token(t) for t in item) for item in value):
        return [_decoded(item) for item in value]
    raise serializers.ValidationError(_INPUT_SHAPES, code="invalid_type")


_INPUT_SHAPES = "Expected a string, a list of strings, a list of token ids or a list of lists of token ids."
_TEXT_SHAPES = "Expected a string or a list of strings."


def _decoded(tokens: list[int]) -> str:
    if not tokens:
        raise serializers.ValidationError("A token array must not be empty.", code="empty_string")
    try:
        return decode_tokens(tokens, DEFAULT_ENCODING)
    except UnknownTokenError as exc:
        raise serializers.ValidationError(
            f"Token id {exc.token} is out of range for {exc.encoding}.", code="invalid_token"
        ) from None


class BatchInput(EmbeddingsInput):
    encoding_format = None  # type: ignore[assignment]  # chosen when reading the result
    dimensions = None  # type: ignore[assignment]  # a batch's vectors are kept whole
    token_ids = False  # a batch keeps its inputs as texts

    def max_inputs(self) -> int:
        return int(settings.EMBEDDINGS_BATCH_MAX_INPUTS)


class EmbeddingItem(serializers.Serializer[Any]):
    object = serializers.CharField(default="embedding")
    index = serializers.IntegerField()
    embedding = serializers.ListField(child=serializers.FloatField(), help_text="or a base64 string of float32")


class EmbeddingsUsage(serializers.Serializer[Any]):
    prompt_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class EmbeddingsOutput(serializers.Serializer[Any]):
    object = serializers.CharField(default="list")
    data = EmbeddingItem(many=True)  # type: ignore[assignment]  # a declared field: the metaclass pops it
    model = serializers.CharField()
    usage = EmbeddingsUsage()


class BatchOutput(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    object = serializers.CharField(default="embedding.batch")
    status = serializers.CharField(help_text="queued, running, succeeded, failed")
    model = serializers.CharField()
    inputs = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    # A declared field: the metaclass pops it.
    data = EmbeddingItem(many=True, required=False, help_text="once succeeded")  # type: ignore[assignment]
    usage = EmbeddingsUsage(required=False)
    error = serializers.DictField(required=False)


class DocumentInput(serializers.Serializer[Any]):
    id = serializers.CharField(required=False, max_length=200)
    title = serializers.CharField(required=False, allow_blank=True, max_length=300)
    text = serializers.CharField(trim_whitespace=False, max_length=settings.RAG_MAX_DOCUMENT_CHARS)

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("The text must not be blank.", code="blank")
        return value


class IngestInput(serializers.Serializer[Any]):
    documents = serializers.ListField(child=DocumentInput(), allow_empty=False, max_length=settings.RAG_MAX_DOCUMENTS)
    embedding_model = serializers.CharField(
        required=False, max_length=260, help_text="For a new collection (default: EMBEDDINGS_DEFAULT_MODEL)."
    )

    def validate_documents(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [d["id"] for d in value if d.get("id")]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("Each document id may appear only once.", code="duplicate_id")
        return value


class IngestedDocument(serializers.Serializer[Any]):
    id = serializers.CharField()
    title = serializers.CharField()
    chunks = serializers.IntegerField()
    replaced = serializers.BooleanField()


class CollectionOutput(serializers.Serializer[Any]):
    name = serializers.CharField()
    owner = serializers.CharField(help_text="team:<name>, key:<prefix> or staff")
    shared_with_teams = serializers.ListField(
        child=serializers.CharField(), allow_null=True, help_text="null for a key that only reads the collection"
    )
    public_read = serializers.BooleanField()
    embedding_model = serializers.CharField()
    dimensions = serializers.IntegerField(allow_null=True)
    status = serializers.CharField(help_text="empty, indexing, ready, failed")
    documents = serializers.IntegerField()
    chunks = serializers.IntegerField()
    embedded_chunks = serializers.IntegerField()
    index_version = serializers.IntegerField()
    indexed_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()


class CollectionList(serializers.Serializer[Any]):
    data = CollectionOutput(many=True)  # type: ignore[assignment]  # a declared field: the metaclass pops it


class ShareInput(serializers.Serializer[Any]):
    shared_with_teams = serializers.ListField(
        child=serializers.SlugField(max_length=100),
        required=False,
        max_length=1000,
        help_text="Team names; replaces the list.",
    )
    public_read = serializers.BooleanField(required=False, help_text="Every key may query it (never ingest).")


class IngestOutput(serializers.Serializer[Any]):
    collection = CollectionOutput()
    documents = IngestedDocument(many=True)


class RagInput(GenerateInput):
    prompt = None  # type: ignore[assignment]  # removes GenerateInput's field: RAG asks a query instead
    query = serializers.CharField(max_length=100_000)
    collection = serializers.SlugField(max_length=100)
    top_k = serializers.IntegerField(min_value=1, max_value=20, default=4)


class SourceOutput(serializers.Serializer[Any]):
    document = serializers.CharField(help_text="The document's id")
    title = serializers.CharField()
    chunk = serializers.IntegerField(help_text="The chunk's index in its document")
    score = serializers.FloatField(help_text="Cosine similarity to the query")
    text = serializers.CharField()


class CollectionProgress(serializers.Serializer[Any]):
    chunks = serializers.IntegerField()
    embedded_chunks = serializers.IntegerField(help_text="What the sources were searched in")


class RagOutput(serializers.Serializer[Any]):
    output = serializers.CharField()
    sources = SourceOutput(many=True)
    collection_status = serializers.CharField(required=False, help_text="Only when not ready: indexing, failed, empty")
    collection_progress = CollectionProgress(required=False)
    meta = MetaOutput()
