"""The ranker's input matrix: one definition shared by training and serving.

Columns: the scalars in SCALAR_INPUTS, then (for a model with learned
embeddings) EMBEDDING_INPUTS, then the element-wise product of the user and
item vectors (D columns), which lets the MLP weigh each attribute of the
match instead of only their cosine, then (for a query-aware model) QUERY_INPUTS:
the query's relevance parts (features.relevance) and whether there is a query,
all 0 without one, so the ranker learns how much a query matters against taste.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from features import names

SCALAR_INPUTS: Final = (
    "similarity",
    "bias",
    "user_bias",
    "user_activity",
    "item_bias",
    "item_conversion",
    "item_price",
)
EMBEDDING_INPUTS: Final = ("embedding_score", "embedding_cosine")
INTERACTION: Final = "user_vector*item_vector"
QUERY_INPUTS: Final = ("query_relevance", "query_lexical", "query_semantic", "has_query")

# The Feast features the inputs are computed from, as "view:feature" refs.
FEAST_FEATURES: Final = tuple(sorted(names.USER_REFS + names.ITEM_REFS))
EMBEDDING_FEATURES: Final = tuple(sorted(names.USER_EMBEDDING_REFS + names.ITEM_EMBEDDING_REFS))


def feast_features(embeddings: bool) -> tuple[str, ...]:
    return tuple(sorted(FEAST_FEATURES + (EMBEDDING_FEATURES if embeddings else ())))


def input_columns(vector_dim: int, embeddings: bool = False, query: bool = False) -> list[str]:
    extra = EMBEDDING_INPUTS if embeddings else ()
    last = QUERY_INPUTS if query else ()
    return [*SCALAR_INPUTS, *extra, *(f"{INTERACTION}[{j}]" for j in range(vector_dim)), *last]


def assemble(
    similarity: np.ndarray,
    bias: np.ndarray,
    user_vector: np.ndarray,
    user_bias: np.ndarray | float,
    user_activity: np.ndarray | float,
    item_vectors: np.ndarray,
    item_bias: np.ndarray,
    item_conversion: np.ndarray,
    item_price: np.ndarray,
    embedding_parts: tuple[np.ndarray, np.ndarray] | None = None,
    query_parts: np.ndarray | None = None,
) -> np.ndarray:
    """float32 [n, len(input_columns)]; user values broadcast over the n rows.

    embedding_parts: (embedding_score, embedding_cosine), for models that take them.
    query_parts: float32 [n, len(QUERY_INPUTS)] (or [1, ...], broadcast), for
    query-aware models.
    """
    n, dim = item_vectors.shape
    extra = 0 if embedding_parts is None else len(EMBEDDING_INPUTS)
    first = len(SCALAR_INPUTS) + extra  # where the interaction columns start
    last = 0 if query_parts is None else len(QUERY_INPUTS)
    # One buffer filled in place: no per-part arrays to stack and copy again.
    out = np.empty((n, first + dim + last), dtype=np.float32)
    out[:, 0] = similarity
    out[:, 1] = bias
    out[:, 2] = user_bias
    out[:, 3] = user_activity
    out[:, 4] = item_bias
    out[:, 5] = item_conversion
    out[:, 6] = item_price
    if embedding_parts is not None:
        out[:, 7] = embedding_parts[0]
        out[:, 8] = embedding_parts[1]
    np.multiply(item_vectors, user_vector, out=out[:, first : first + dim])
    if query_parts is not None:
        out[:, first + dim :] = query_parts
    return out
