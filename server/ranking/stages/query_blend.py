"""QueryBlend: with a query, relevance leads and the user's taste orders within it."""

from __future__ import annotations

import numpy as np

from server.ranking.batch import Batch

# How much of a query's ranking taste may move: half. A product of relevance and
# taste let a liked partial match ("Star Maps") beat a full one ("Star Wars") for
# 126 of 500 MovieLens users, whose taste score for the full match was near 0.
TASTE_SHARE = np.float32(0.5)


class QueryBlend:
    """Gives `score` = relevance^2 x (1 - TASTE_SHARE + TASTE_SHARE x score) when
    the query has terms, still in [0, 1]: an item matching every term (relevance
    near 1) scores at least half, a partial match at relevance r at most r^2, so
    matches come first and taste (the ranker's score, or the heuristic, or bias
    for cold start) orders them. A query-aware ranker (trained on search events,
    training/search_rows.py) has already weighed the query against taste in its
    score, so for a user it scored the blend is skipped; a cold-start user's bias
    is still blended."""

    name = "query_blend"
    needs = ("score", "query_relevance")
    gives = ("score",)

    def __init__(self, model_takes_query: bool = False) -> None:
        self._model_takes_query = model_takes_query

    def __call__(self, batch: Batch) -> None:
        if self._model_takes_query and batch.user.known:
            return
        if batch.query.terms:
            relevance = batch["query_relevance"]
            taste = np.float32(1.0) - TASTE_SHARE + TASTE_SHARE * batch["score"]
            batch["score"] = relevance * relevance * taste
