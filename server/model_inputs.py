"""The ranker's input matrix: one definition shared by training and serving.

Columns: the scalars in SCALAR_INPUTS, then the element-wise product of the
user and item vectors (D columns), which lets the MLP weigh each attribute
of the match instead of only their cosine.
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


def input_columns(vector_dim: int) -> list[str]:
    return [*SCALAR_INPUTS, *(f"{INTERACTION}[{j}]" for j in range(vector_dim))]


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
) -> np.ndarray:
    """float32 [n, len(SCALAR_INPUTS) + D]; user values broadcast over the n rows."""
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
    return np.concatenate([scalars, interaction], axis=1)
