"""BM25 over the catalogue's item text, with bm25s (sparse matrices, no engine to run).

bm25s's "lucene" variant, k1=1.2 and b=0.75 (Lucene's defaults):

    score(q, d) = sum over terms t of q:  idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

tf: t's count in d; |d|: d's terms; avgdl: the mean |d|; N: the items; df(t):
the items containing t. tests/unit/test_lexical.py holds it to hand-computed values.
bm25s, not tantivy (which was not measured): it gives the dense score of every item
for a term in one call, which scoring a request's given candidates needs, and at
1M item texts that call and the top matches took 3.0 ms here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from features.text import terms

K1 = 1.2
B = 0.75


class LexicalIndex:
    """BM25 scores of queries over a fixed list of item texts, row i for texts[i]."""

    def __init__(self, texts: Sequence[str]) -> None:
        import bm25s  # imported with the first catalogue, not at server import

        self._size = len(texts)
        self._bm25 = bm25s.BM25(k1=K1, b=B, method="lucene")
        corpus = [terms(text) for text in texts]
        if any(corpus):
            self._bm25.index(corpus, show_progress=False)
            self._empty = False
        else:  # bm25s cannot index a corpus without a term
            self._empty = True

    def __len__(self) -> int:
        return self._size

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        """float32 [N]: every item's BM25 score; 0 where no term matches."""
        if self._empty or not query_terms:
            return np.zeros(self._size, dtype=np.float32)
        scores: np.ndarray = self._bm25.get_scores(list(query_terms))
        return scores.astype(np.float32, copy=False)

    def matched(self, query_terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """float32 [N] each: every item's BM25 score, and its relevance, the score
        times the share of the query's distinct terms the item contains. A title
        with every term then outranks one with some, however short: "Star Maps"
        has the better BM25 for "star wars" than "Star Wars: Episode IV - A New
        Hope", and half its relevance. Lucene's minimum_should_match, made smooth."""
        distinct = list(dict.fromkeys(query_terms))
        total = np.zeros(self._size, dtype=np.float32)
        if self._empty or not distinct:
            return total, total.copy()
        hits = np.zeros(self._size, dtype=np.float32)
        for term in distinct:  # one sparse column each: a query has a few terms
            scores = self._bm25.get_scores([term]).astype(np.float32, copy=False)
            total += scores
            hits += scores > 0
        return total, total * (hits / np.float32(len(distinct)))
