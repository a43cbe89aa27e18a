"""The features of one request, as arrays: what the fetch gives the scorer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UserRow:
    """One user's features; a user the store does not know has known=False and zeros."""

    vector: np.ndarray  # float32 [D]
    bias: float
    activity: float
    known: bool
    timestamp: float  # epoch seconds of the feature row; 0 when unknown
    # float32 [E] learned embedding; None when not served, zeros when the user has none.
    embedding: np.ndarray | None = None
    # Items the user bought (or rated, on MovieLens), for the buy-exclusion rule;
    # empty where the store has no history view.
    interacted: tuple[str, ...] = ()

    @classmethod
    def unknown(cls, embeddings: bool) -> UserRow:
        """The row of a user the store has nothing for (embeddings: whether they are served)."""
        empty = np.zeros(0, np.float32)
        return cls(empty, 0.0, 0.0, False, 0.0, empty if embeddings else None)


@dataclass(frozen=True)
class ItemRows:
    """Candidates' features, one row per candidate; unknown items are zero rows."""

    vectors: np.ndarray  # float32 [n, D]
    bias: np.ndarray  # float32 [n]
    conversion: np.ndarray  # float32 [n]
    price: np.ndarray  # float32 [n]
    known: np.ndarray  # bool [n]
    timestamp: np.ndarray  # float64 [n] epoch seconds; 0 when unknown
    # float32 [n, E] learned embeddings; None when not served, zero rows where missing.
    embeddings: np.ndarray | None = None
    # Row norms of vectors and embeddings, where the source keeps them (the item cache).
    vector_norms: np.ndarray | None = None
    embedding_norms: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.known.shape[0])

    def take(self, rows: np.ndarray) -> ItemRows:
        return ItemRows(
            self.vectors[rows],
            self.bias[rows],
            self.conversion[rows],
            self.price[rows],
            self.known[rows],
            self.timestamp[rows],
            None if self.embeddings is None else self.embeddings[rows],
            None if self.vector_norms is None else self.vector_norms[rows],
            None if self.embedding_norms is None else self.embedding_norms[rows],
        )
