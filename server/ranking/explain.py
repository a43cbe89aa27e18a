"""A ranking's score parts per item, for a caller that asked to explain."""

from __future__ import annotations

import numpy as np

from features.scoring import heuristic_score
from server.ranking.batch import Batch, Parts


def explain(batch: Batch, now: float) -> Parts:
    """The parts of the ranked rows; a part this pipeline did not compute is 0."""
    zeros = np.zeros(len(batch), dtype=np.float32)
    known = batch["known"]
    similarity, bias = batch["similarity"], batch["bias"]
    # With a model, the heuristic part is what the fallback would have scored.
    heuristic = batch.get("heuristic_score", zeros)
    if "heuristic_score" not in batch and batch.user.known:
        heuristic = heuristic_score(similarity, bias)
    return Parts(
        similarity=similarity,
        bias=bias,
        model_score=batch.get("model_score", zeros),
        heuristic=heuristic if batch.user.known else zeros,
        embedding_score=batch.get("embedding_score", zeros),
        item_age=np.where(known, now - batch["item_timestamp"], -1.0),
        unknown_item=~known,
    )
