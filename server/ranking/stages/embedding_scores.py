"""EmbeddingScores: how the learned user and item embeddings agree."""

from __future__ import annotations

import numpy as np

from features.errors import FeatureSchemaMismatch
from features.scoring import cosine_similarity, user_dots
from server.ranking.batch import Batch


class EmbeddingScores:
    """Gives `embedding_score` (the dot product) and `embedding_cosine`; zeros
    where either side has no embedding.

    The row-wise formulas training uses (training/publish.py), so serving agrees
    with training to the last bit.
    """

    name = "embedding_scores"
    needs = ("item_embedding", "item_embedding_norm")
    gives = ("embedding_score", "embedding_cosine")

    def __call__(self, batch: Batch) -> None:
        mine = batch.user.embedding
        theirs = batch["item_embedding"]
        if mine is None or mine.size == 0 or theirs.shape[1] == 0:
            zeros = np.zeros(len(batch), dtype=np.float32)
            batch["embedding_score"] = batch["embedding_cosine"] = zeros
            return
        if theirs.shape[1] != mine.size:
            raise FeatureSchemaMismatch(
                f"user embeddings have {mine.size} dimensions, item embeddings "
                f"{theirs.shape[1]}; re-publish the embeddings"
            )
        score = user_dots(mine, theirs).astype(np.float32, copy=False)
        batch["embedding_score"] = score
        batch["embedding_cosine"] = cosine_similarity(
            mine, theirs, batch["item_embedding_norm"], score
        )
