"""QueryMatch: each candidate's relevance to the request's query, BM25 and semantic."""

from __future__ import annotations

import numpy as np

from features.relevance import query_parts
from server.ranking.batch import Batch
from server.ranking.catalogue import CatalogueView
from server.ranking.stages.top_k import top_k


class QueryMatch:
    """Gives `bm25`; `semantic`, the cosine of the query's and the item's text
    vectors; and the relevance parts of features.relevance, in [0, 1]:
    `query_lexical`, `query_semantic` and `query_relevance`, the two fused (a
    query-aware ranker reads all three). Without query terms (or a catalogue)
    bm25, semantic and the parts are 0 and the relevance 1, so the score is left
    as it is.

    lexical_share: BM25's weight in the fusion, the rest semantic's; 1 is BM25
    alone (and the only choice where no text vectors are served).
    """

    name = "query_match"
    needs = ("catalogue_row",)
    gives = ("bm25", "semantic", "query_lexical", "query_semantic", "query_relevance")

    def __init__(self, lexical_share: float = 1.0) -> None:
        self._share = np.float32(lexical_share)

    def __call__(self, batch: Batch) -> None:
        n = len(batch)
        catalogue, terms = batch.catalogue, batch.query.terms
        if not terms or catalogue is None or not n:
            zeros = np.zeros(n, dtype=np.float32)
            batch["bm25"] = batch["semantic"] = zeros
            batch["query_lexical"] = batch["query_semantic"] = zeros
            batch["query_relevance"] = np.ones(n, dtype=np.float32)
            return
        rows = batch["catalogue_row"]
        held = rows >= 0
        at = np.maximum(rows, 0)
        scores, relevance = lexical_match(batch, catalogue)
        zero = np.float32(0.0)
        batch["bm25"] = np.where(held, scores[at], zero)
        cosine = semantic_match(batch, catalogue, rows)
        batch["semantic"] = cosine
        share = self._share if batch.query_vector is not None else np.float32(1.0)
        parts = query_parts(np.where(held, relevance[at], zero), cosine, share)
        batch["query_lexical"], batch["query_semantic"], batch["query_relevance"] = parts


def lexical_match(batch: Batch, catalogue: CatalogueView) -> tuple[np.ndarray, np.ndarray]:
    """The query's BM25 scores and relevance over the catalogue, once per request:
    retrieval by the query and the candidates' relevance read the same arrays."""
    if batch.matched is None:
        batch.matched = catalogue.lexical.matched(batch.query.terms)
    return batch.matched


def semantic_match(batch: Batch, catalogue: CatalogueView, rows: np.ndarray) -> np.ndarray:
    """float32: the query's cosine with each row's text vector; 0 for a row the
    catalogue does not hold, or when the request has no query vector."""
    if batch.query_vector is None or catalogue.text is None:
        return np.zeros(rows.size, dtype=np.float32)
    return catalogue.cosines(rows, batch.query_vector)


def best_matches(relevance: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """The rows of the k most relevant matches (relevance > 0), not in `exclude`, best first."""
    if exclude is not None and exclude.size:
        relevance = relevance.copy()
        relevance[exclude] = 0.0
    k = min(k, int(np.count_nonzero(relevance > 0)))
    if k <= 0:  # top_k reads 0 as "all"
        return np.empty(0, np.int64)
    return top_k(relevance, k)
