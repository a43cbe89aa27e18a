"""Similarity: the method's cos(user interest vector, item vector)."""

from __future__ import annotations

import numpy as np

from features.errors import FeatureSchemaMismatch
from features.scoring import cosine_similarity
from server.ranking.batch import Batch


class Similarity:
    """Gives `similarity` per candidate: 0 for a cold-start user, an unknown item
    or a zero vector."""

    name = "similarity"
    needs = ("known", "item_vector", "item_vector_norm")
    gives = ("similarity",)

    def __call__(self, batch: Batch) -> None:
        user = batch.user
        vectors = batch["item_vector"]
        if not user.known or not batch.known_count():
            batch["similarity"] = np.zeros(len(batch), dtype=np.float32)
            return
        if vectors.shape[1] != user.vector.shape[0]:
            raise FeatureSchemaMismatch(
                f"user vectors have {user.vector.shape[0]} dimensions, item vectors "
                f"{vectors.shape[1]}; re-run `shoprank features materialize`"
            )
        batch["similarity"] = cosine_similarity(user.vector, vectors, batch["item_vector_norm"])
