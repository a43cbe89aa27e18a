"""TopK: the k best candidates, best first."""

from __future__ import annotations

import numpy as np

from server.ranking.batch import Batch


class TopK:
    """Keeps the request's top_k rows (all for 0) of every column, best first by
    `rank_key`; equal keys keep request order. When a business rule reorders the
    ranking it orders every row, and Cut cuts after the rules. Gives `rule` and
    `rule_from`, empty (0): the rules after it mark the rows they move."""

    name = "top_k"
    needs = ("rank_key",)
    gives = ("rule", "rule_from")

    def __call__(self, batch: Batch) -> None:
        query = batch.query
        batch.take(top_k(batch["rank_key"], 0 if query.rules.reorder else query.top_k))
        batch["rule"] = np.zeros(len(batch), dtype=np.int8)
        batch["rule_from"] = np.zeros(len(batch), dtype=np.int32)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the k best scores, best first; ties keep input order.

    A partition narrows to the k best in O(n), then a stable sort orders
    only those k, so equal scores stay in request order.
    """
    n = scores.shape[0]
    k = n if k <= 0 else min(k, n)
    if k == 0:
        return np.empty(0, dtype=np.int64)
    if k == n:  # all of them (a page of the whole request): one stable sort
        # The method, not np.argsort: its Python wrapper cost as much as the sort here.
        every: np.ndarray = (-scores).argsort(kind="stable")
        return every
    # The k-th best value: everything strictly better, then ties in index order.
    negated = -scores
    kth = np.partition(negated, k - 1)[k - 1]
    better = np.flatnonzero(negated < kth)
    ties = np.flatnonzero(negated == kth)[: k - better.size]
    chosen = np.sort(np.concatenate([better, ties]))
    best_first: np.ndarray = chosen[np.argsort(negated[chosen], kind="stable")]
    return best_first
