"""MMR: maximal marginal relevance over the first ranks."""

from __future__ import annotations

import numpy as np

from server.ranking.batch import MMR, Batch
from server.ranking.stages.diversity import mark_reordered


class Mmr:
    """With mmr_lambda in (0, 1), fills the first `window` ranks greedily by
    lambda x score - (1 - lambda) x (the highest cosine of the item's attribute
    vector to one already placed); ties go to the better rank, and the rest keep
    their order after. lambda 1 is the ranking as it is."""

    name = "mmr"
    needs = ("score", "catalogue_row", "rule", "rule_from")
    gives = ("rule", "rule_from")

    def __call__(self, batch: Batch) -> None:
        rules = batch.query.rules
        lam = rules.mmr_lambda
        if not lam or lam >= 1.0 or batch.catalogue is None or len(batch) < 2:
            return
        rows = batch["catalogue_row"]
        vectors = np.where(
            (rows >= 0)[:, np.newaxis], batch.catalogue.unit_rows(np.maximum(rows, 0)), 0.0
        ).astype(np.float32)
        window = rules.diversity_window or batch.query.top_k or len(batch)
        order = mmr_order(batch["score"], vectors, lam, window)
        mark_reordered(batch, order, MMR)


def mmr_order(score: np.ndarray, vectors: np.ndarray, lam: float, window: int) -> np.ndarray:
    """Rows (ranked best first) in MMR order for the first `window`, then the rest."""
    n = score.size
    window = min(window, n)
    left = np.ones(n, dtype=bool)
    closest = np.full(n, -np.inf, dtype=np.float64)  # max similarity to a placed row
    chosen: list[int] = []
    for step in range(window):
        gain = lam * score.astype(np.float64)
        if step:
            gain -= (1.0 - lam) * closest
        gain[~left] = -np.inf
        best = int(np.argmax(gain))  # argmax takes the first of equals: the better rank
        chosen.append(best)
        left[best] = False
        closest = np.maximum(closest, vectors @ vectors[best])
    rest = np.flatnonzero(left)
    return np.concatenate([np.array(chosen, dtype=np.int64), rest])
