"""QueryMatch: each candidate's BM25 relevance to the request's query."""

from __future__ import annotations

import numpy as np

from server.ranking.batch import Batch


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
        scores, relevance = catalogue.lexical.matched(terms)
        zero = np.float32(0.0)
        batch["bm25"] = np.where(held, scores[at], zero)
        relevance = np.where(held, relevance[at], zero)
        best = float(relevance.max())
        batch["query_relevance"] = (
            relevance / np.float32(best) if best > 0 else np.zeros(n, dtype=np.float32)
        )
