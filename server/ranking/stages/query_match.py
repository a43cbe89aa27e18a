"""QueryMatch: each candidate's BM25 relevance to the request's query."""

from __future__ import annotations

import numpy as np

from server.ranking.batch import Batch
from server.ranking.catalogue import CatalogueView
from server.ranking.stages.top_k import top_k


class QueryMatch:
    """Gives `bm25`, and `query_relevance`: bm25 times the share of the query's
    terms the item holds (server/retrieval/lexical.py), over the best of the
    candidates, in [0, 1]. Without query terms (or without a match) both are
    constant: bm25 0, relevance 1, so the score is left as it is."""

    name = "query_match"
    needs = ("catalogue_row",)
    gives = ("bm25", "query_relevance")

    def __call__(self, batch: Batch) -> None:
        n = len(batch)
        catalogue, terms = batch.catalogue, batch.query.terms
        if not terms or catalogue is None or not n:
            batch["bm25"] = np.zeros(n, dtype=np.float32)
            batch["query_relevance"] = np.ones(n, dtype=np.float32)
            return
        rows = batch["catalogue_row"]
        held = rows >= 0
        at = np.maximum(rows, 0)
        scores, relevance = lexical_match(batch, catalogue)
        zero = np.float32(0.0)
        batch["bm25"] = np.where(held, scores[at], zero)
        relevance = np.where(held, relevance[at], zero)
        best = float(relevance.max())
        batch["query_relevance"] = (
            relevance / np.float32(best) if best > 0 else np.zeros(n, dtype=np.float32)
        )


def lexical_match(batch: Batch, catalogue: CatalogueView) -> tuple[np.ndarray, np.ndarray]:
    """The query's BM25 scores and relevance over the catalogue, once per request:
    retrieval by the query and the candidates' relevance read the same arrays."""
    if batch.matched is None:
        batch.matched = catalogue.lexical.matched(batch.query.terms)
    return batch.matched


def best_matches(relevance: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """The rows of the k most relevant matches (relevance > 0), not in `exclude`, best first."""
    if exclude is not None and exclude.size:
        relevance = relevance.copy()
        relevance[exclude] = 0.0
    k = min(k, int(np.count_nonzero(relevance > 0)))
    if k <= 0:  # top_k reads 0 as "all"
        return np.empty(0, np.int64)
    return top_k(relevance, k)
