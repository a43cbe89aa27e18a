"""QueryMatch: each candidate's relevance to the request's query, BM25 and semantic."""

from __future__ import annotations

import numpy as np

from server.ranking.batch import Batch
from server.ranking.catalogue import CatalogueView
from server.ranking.stages.top_k import top_k

# The cosine of two all-MiniLM-L6-v2 texts at or below which they count as unrelated.
# On the synthetic catalogue (bench/search.py), a category's name or synonym against
# items outside it: median 0.13, 90th percentile 0.25; against items in it: 10th
# percentile 0.20, median 0.44. So most unrelated pairs score 0, most related ones more.
SEMANTIC_FLOOR = np.float32(0.2)


class QueryMatch:
    """Gives `bm25`; `semantic`, the cosine of the query's and the item's text
    vectors; and `query_relevance`, the two fused (hybrid_relevance), in [0, 1].
    Without query terms (or a catalogue) bm25 and semantic are 0 and the
    relevance 1, so the score is left as it is.

    lexical_share: BM25's weight in the fusion, the rest semantic's; 1 is BM25
    alone (and the only choice where no text vectors are served).
    """

    name = "query_match"
    needs = ("catalogue_row",)
    gives = ("bm25", "semantic", "query_relevance")

    def __init__(self, lexical_share: float = 1.0) -> None:
        self._share = np.float32(lexical_share)

    def __call__(self, batch: Batch) -> None:
        n = len(batch)
        catalogue, terms = batch.catalogue, batch.query.terms
        if not terms or catalogue is None or not n:
            batch["bm25"] = np.zeros(n, dtype=np.float32)
            batch["semantic"] = np.zeros(n, dtype=np.float32)
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
        batch["query_relevance"] = hybrid_relevance(
            np.where(held, relevance[at], zero), cosine, share
        )


def hybrid_relevance(lexical: np.ndarray, cosine: np.ndarray, share: np.float32) -> np.ndarray:
    """float32 in [0, 1], the best of these rows 1 (all 0 when none relates):
    share x lexical + (1 - share) x semantic, each over its best row first, the
    semantic part the cosine above SEMANTIC_FLOOR. Each over its best, so neither
    BM25's unbounded scale nor the cosines' narrow one decides alone; a row that
    matches no term can still rank by meaning ("sneakers" for running shoes)."""
    lexical = over_best(lexical)
    if share >= 1.0:
        return lexical
    semantic = over_best(np.maximum(cosine - SEMANTIC_FLOOR, np.float32(0.0)))
    return over_best(share * lexical + (np.float32(1.0) - share) * semantic)


def over_best(values: np.ndarray) -> np.ndarray:
    best = float(values.max()) if values.size else 0.0
    if best <= 0.0:
        return np.zeros(values.shape, dtype=np.float32)
    scaled: np.ndarray = (values / np.float32(best)).astype(np.float32, copy=False)
    return scaled


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
