"""UnknownLast: items the store does not know rank after every known one."""

from __future__ import annotations

import numpy as np

from server.ranking.batch import Batch


class UnknownLast:
    """Gives `score`, 0 for unknown items, and `rank_key`, the order TopK sorts
    by: the score, and -1 for unknown items. Scores are in [0, 1], so unknown
    items follow every known one, in request order; they are never dropped."""

    name = "unknown_last"
    needs = ("known", "score")
    gives = ("score", "rank_key")

    def __call__(self, batch: Batch) -> None:
        score = batch["score"]
        if batch.known_count() == len(batch):  # the common case: nothing to mask
            batch["rank_key"] = score
            return
        known = batch["known"]
        batch["score"] = np.where(known, score, np.float32(0.0))
        batch["rank_key"] = np.where(known, score, np.float32(-1.0))
