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
    if not batch.user.known:  # cold start: nothing for the heuristic to score
        heuristic = zeros
    elif "heuristic_score" in batch:
        heuristic = batch["heuristic_score"]
    else:  # with a model, the heuristic part is what the fallback would have scored
        heuristic = heuristic_score(similarity, bias)
    return Parts(
        similarity=similarity,
        bias=bias,
        model_score=batch.get("model_score", zeros),
        heuristic=heuristic,
        embedding_score=batch.get("embedding_score", zeros),
        item_age=np.where(known, now - batch["item_timestamp"], -1.0),
        unknown_item=~known,
        source=batch["retrieval_source"],
        bm25=batch["bm25"],
        semantic=batch["semantic"],
        query_relevance=batch["query_relevance"],
        rule=batch["rule"],
        rule_from=batch["rule_from"],
    )
