"""Embeddings and retrieval-augmented generation (``rag``)."""

from __future__ import annotations

from pathlib import Path

from .base import VAR_DIR
from .env import env_int, env_str

# The model of /api/v1/embeddings when a request names none, and of new collections.
# (An empty value, as .env.example leaves some, means the default.)
EMBEDDINGS_DEFAULT_MODEL = env_str("EMBEDDINGS_DEFAULT_MODEL") or "local/all-minilm-l6-v2"
# Inputs per upstream call; a request is cut into batches of this size.
EMBEDDINGS_BATCH_SIZE = env_int("EMBEDDINGS_BATCH_SIZE", 64, minimum=1)
# Inputs one request may carry (OpenAI's limit is 2048).
EMBEDDINGS_MAX_INPUTS = env_int("EMBEDDINGS_MAX_INPUTS", 2048, minimum=1)

# FAISS indexes, one file per collection (rebuilt from the stored chunk vectors when missing or stale).
RAG_INDEX_DIR = Path(env_str("RAG_INDEX_DIR") or VAR_DIR / "rag").resolve()
# Chunking: characters per chunk and characters shared by consecutive chunks.
RAG_CHUNK_SIZE = env_int("RAG_CHUNK_SIZE", 800, minimum=50)
RAG_CHUNK_OVERLAP = env_int("RAG_CHUNK_OVERLAP", 120, minimum=0)
# Documents one ingest request may carry, and characters per document.
RAG_MAX_DOCUMENTS = env_int("RAG_MAX_DOCUMENTS", 500, minimum=1)
RAG_MAX_DOCUMENT_CHARS = env_int("RAG_MAX_DOCUMENT_CHARS", 2_000_000, minimum=1)

# The semantic routing mode: a request goes to the category of its most similar example phrase.
ROUTING_EMBEDDING_MODEL = env_str("ROUTING_EMBEDDING_MODEL") or EMBEDDINGS_DEFAULT_MODEL
# Inputs one batch (POST /api/v1/embeddings/batches, embedded by a worker) may carry.
EMBEDDINGS_BATCH_MAX_INPUTS = env_int("EMBEDDINGS_BATCH_MAX_INPUTS", 50_000, minimum=1)
