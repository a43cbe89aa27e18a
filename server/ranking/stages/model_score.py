"""ModelScore: the trained ranker, one ONNX call over all candidates."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from features.model_inputs import assemble
from server.ranking.batch import Batch

INPUTS = (
    "known",
    "similarity",
    "bias",
    "item_vector",
    "item_bias",
    "item_conversion",
    "item_price",
)
EMBEDDING_INPUTS = ("embedding_score", "embedding_cosine")
QUERY_INPUTS = ("query_relevance", "query_lexical", "query_semantic")


class Scorer(Protocol):
    def score(self, features: np.ndarray) -> np.ndarray:
        """One score per row of the ranker's input matrix (features.model_inputs)."""
        ...


class ModelScore:
    """Gives `model_score` and `score`: the model's score of each known candidate,
    0 for unknown items. A cold-start user has no features for the model: it is
    not called, and ColdStart scores them."""

    name = "model_score"
    gives = ("model_score", "score")

    def __init__(self, model: Scorer, embeddings: bool, query: bool = False) -> None:
        self._model = model
        self._embeddings = embeddings  # the model takes the embedding inputs
        self._query = query  # ... and the query's relevance parts
        self.needs = (
            INPUTS + (EMBEDDING_INPUTS if embeddings else ()) + (QUERY_INPUTS if query else ())
        )

    def __call__(self, batch: Batch) -> None:
        user = batch.user
        found = batch.known_count() if user.known else 0
        if not found:
            batch["model_score"] = batch["score"] = np.zeros(len(batch), dtype=np.float32)
            return
        embedded = (
            (batch["embedding_score"], batch["embedding_cosine"]) if self._embeddings else None
        )
        inputs = assemble(
            batch["similarity"],
            batch["bias"],
            user.vector,
            user.bias,
            user.activity,
            batch["item_vector"],
            batch["item_bias"],
            batch["item_conversion"],
            batch["item_price"],
            embedded,
            query_inputs(batch) if self._query else None,
        )
        score = self._model.score(inputs)
        if found < len(batch):
            score = np.where(batch["known"], score, np.float32(0.0))
        batch["model_score"] = batch["score"] = score


def query_inputs(batch: Batch) -> np.ndarray:
    """[n, 4]: relevance, lexical, semantic and 1 with query terms; one row of 0s
    (broadcast) without, as the ranker was trained (training/search_rows.py)."""
    if not batch.query.terms:
        return np.zeros((1, len(QUERY_INPUTS) + 1), dtype=np.float32)
    parts = [batch[name] for name in QUERY_INPUTS]
    return np.stack([*parts, np.ones(len(batch), dtype=np.float32)], axis=1)
