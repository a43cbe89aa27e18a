"""The ranker's input matrix: one definition shared by training and serving.

Columns: the scalars in SCALAR_INPUTS, then (for a model with learned
embeddings) EMBEDDING_INPUTS, then the element-wise product of the user and
item vectors (D columns), which lets the MLP weigh each attribute of the
match instead of only their cosine.
"""

from __future__ import annotations

from typing import Final

import numpy as np

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

# The Feast features the inputs are computed from, as "view:feature" refs.
FEAST_FEATURES: Final = (
    "item_features:item_bias",
    "item_features:item_conversion",
    "item_features:item_price",
    "item_features:item_vector",
    "user_features:user_activity",
    "user_features:user_bias",
    "user_features:user_vector",
)


EMBEDDING_FEATURES: Final = ("item_embeddings:item_embedding", "user_embeddings:user_embedding")


def feast_features(embeddings: bool) -> tuple[str, ...]:
    return tuple(sorted(FEAST_FEATURES + (EMBEDDING_FEATURES if embeddings else ())))


def input_columns(vector_dim: int, embeddings: bool = False) -> list[str]:
    extra = EMBEDDING_INPUTS if embeddings else ()
    return [*SCALAR_INPUTS, *extra, *(f"{INTERACTION}[{j}]" for j in range(vector_dim))]


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
) -> np.ndarray:
    """float32 [n, len(input_columns)]; user values broadcast over the n rows.

    embedding_parts: (embedding_score, embedding_cosine), for models that take them.
    """
    n = item_vectors.shape[0]
    scalars = np.empty((n, len(SCALAR_INPUTS)), dtype=np.float32)
    scalars[:, 0] = similarity
    scalars[:, 1] = bias
    scalars[:, 2] = user_bias
    scalars[:, 3] = user_activity
    scalars[:, 4] = item_bias
    scalars[:, 5] = item_conversion
    scalars[:, 6] = item_price
    interaction = (item_vectors * user_vector).astype(np.float32)
    if embedding_parts is None:
        return np.concatenate([scalars, interaction], axis=1)
    embedded = np.stack(embedding_parts, axis=1).astype(np.float32)
    return np.concatenate([scalars, embedded, interaction], axis=1)
