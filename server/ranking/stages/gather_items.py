"""GatherItems: the candidates' feature rows, from the item source (the cache)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from features.rows import ItemRows
from features.scoring import row_norms
from server.ranking.batch import ITEM_ID, Batch


class ItemReader(Protocol):
    def items(self, item_ids: Sequence[str]) -> ItemRows:
        """One row per id, in order; ids it does not know come back known=False."""
        ...


class GatherItems:
    """Gives each candidate's item features, and `known`: False for an item the
    store does not know, whose features are zeros. Without served embeddings,
    item_embedding has no columns."""

    name = "gather_items"
    needs = (ITEM_ID,)
    gives = (
        "known",
        "item_vector",
        "item_vector_norm",
        "item_bias",
        "item_conversion",
        "item_price",
        "item_timestamp",
        "item_embedding",
        "item_embedding_norm",
    )

    def __init__(self, items: ItemReader) -> None:
        self._items = items

    def __call__(self, batch: Batch) -> None:
        rows = self._items.items(batch.ids)
        batch["known"] = rows.known
        batch["item_vector"] = rows.vectors
        batch["item_vector_norm"] = (
            row_norms(rows.vectors) if rows.vector_norms is None else rows.vector_norms
        )
        batch["item_bias"] = rows.bias
        batch["item_conversion"] = rows.conversion
        batch["item_price"] = rows.price
        batch["item_timestamp"] = rows.timestamp
        embeddings = rows.embeddings
        if embeddings is None:
            embeddings = np.zeros((len(rows), 0), dtype=np.float32)
        batch["item_embedding"] = embeddings
        batch["item_embedding_norm"] = (
            row_norms(embeddings) if rows.embedding_norms is None else rows.embedding_norms
        )
