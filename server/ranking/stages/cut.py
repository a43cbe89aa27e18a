"""Cut: the first top_k ranks, after the rules that reorder."""

from __future__ import annotations

import numpy as np

from server.ranking.batch import Batch


class Cut:
    """Keeps the first top_k rows (all for 0). TopK has already cut when no rule
    reorders; the rules needed the whole order."""

    name = "cut"
    needs = ()
    gives = ()

    def __call__(self, batch: Batch) -> None:
        k = batch.query.top_k
        if k and k < len(batch):
            batch.take(np.arange(k))
