"""A query's relevance to items: BM25 and the semantic cosine, each over its best, fused.

Pure, and shared: the server's QueryMatch and Retrieve, and the training rows the
ranker learns the query's weight from (training/search_rows.py), compute it here.
"""

from __future__ import annotations

from typing import Final

import numpy as np

# The cosine of two all-MiniLM-L6-v2 texts at or below which they count as unrelated.
# On the synthetic catalogue (bench/search.py), a category's name or synonym against
# items outside it: median 0.13, 90th percentile 0.25; against items in it: 10th
# percentile 0.20, median 0.44. So most unrelated pairs score 0, most related ones more.
SEMANTIC_FLOOR: Final = np.float32(0.2)
# BM25's weight in the fused relevance by default, the rest the cosine's: the best
# of 0, .25, .5, .75 and 1 on the synthetic training period's searches (NDCG@10
# .433 against BM25 alone .382; bench/search.py). The server's SHOPRANK_LEXICAL_SHARE.
DEFAULT_LEXICAL_SHARE: Final = 0.75


def query_parts(
    lexical: np.ndarray, cosine: np.ndarray, share: np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (lexical, semantic, fused), each in [0, 1] over these rows: lexical
    over its best row; semantic, the cosine above SEMANTIC_FLOOR, over its best;
    fused, share x lexical + (1 - share) x semantic, over its best (all 0 when
    nothing relates). Each over its best, so neither BM25's unbounded scale nor the
    cosines' narrow one decides alone; a row that matches no term can still rank
    by meaning ("sneakers" for running shoes). share 1: BM25 alone."""
    lexical = over_best(lexical)
    semantic = over_best(np.maximum(cosine - SEMANTIC_FLOOR, np.float32(0.0)))
    if share >= 1.0:
        return lexical, semantic, lexical
    return lexical, semantic, over_best(share * lexical + (np.float32(1.0) - share) * semantic)


def hybrid_relevance(lexical: np.ndarray, cosine: np.ndarray, share: np.float32) -> np.ndarray:
    """query_parts' fused relevance alone."""
    return query_parts(lexical, cosine, share)[2]


def over_best(values: np.ndarray) -> np.ndarray:
    best = float(values.max()) if values.size else 0.0
    if best <= 0.0:
        return np.zeros(values.shape, dtype=np.float32)
    scaled: np.ndarray = (values / np.float32(best)).astype(np.float32, copy=False)
    return scaled
