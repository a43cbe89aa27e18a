"""Learned embeddings: trained on the training interactions, published back to Feast.

The published vectors are those whose plain dot product is the model's score
(an item bias rides along as one more column), so the server needs no model
to compute the embedding score: it reads two features and takes a dot product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features import names, store
from features.offline import snapshot_file, write_snapshot
from features.schema import EVENT_WEIGHTS
from features.scoring import rowwise_cosine
from features.workspace import Workspace
from training.embeddings import EmbeddingConfig, train_embeddings

# Events that say the user chose the item (a search result shown is not enough).
CHOICE_WEIGHT = 1.0


@dataclass(frozen=True)
class EmbeddingLookup:
    """Published vectors by id, for assembling training and evaluation rows."""

    user_index: pd.Index
    item_index: pd.Index
    users: np.ndarray  # float32 [n_users, E]
    items: np.ndarray  # float32 [n_items, E]

    def parts(self, user_ids: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dot product, cosine) per row; zeros where either id has no embedding."""
        u = self.user_index.get_indexer(user_ids)
        i = self.item_index.get_indexer(item_ids)
        found = (u >= 0) & (i >= 0)
        users = np.where(found[:, None], self.users[np.maximum(u, 0)], 0.0).astype(np.float32)
        items = np.where(found[:, None], self.items[np.maximum(i, 0)], 0.0).astype(np.float32)
        score = np.einsum("ij,ij->i", users, items).astype(np.float32)
        return score, rowwise_cosine(users, items)


def choices(workspace: Workspace) -> pd.DataFrame:
    """Distinct (user_id, item_id) pairs of the training events that show a choice."""
    events = pq.read_table(workspace.events_path, columns=["user_id", "item_id", "event_type"])
    chosen = [kind for kind, weight in EVENT_WEIGHTS.items() if weight >= CHOICE_WEIGHT]
    events = events.filter(pc.is_in(events["event_type"], pa.array(chosen)))
    catalog = pq.read_table(workspace.catalog_path, columns=["item_id"])["item_id"]
    events = events.filter(pc.is_in(events["item_id"], catalog))
    return events.select(["user_id", "item_id"]).to_pandas().drop_duplicates()


def newest_snapshot_time(workspace: Workspace) -> datetime:
    column = pq.read_table(workspace.user_features_path, columns=["event_timestamp"])[0]
    newest: datetime = pc.max(column).as_py()
    return newest


def learn_and_publish(
    workspace: Workspace, config: EmbeddingConfig, progress: Callable[[str], None]
) -> EmbeddingLookup:
    pairs = choices(workspace)
    user_index = pd.Index(sorted(pairs["user_id"].unique()))
    item_index = pd.Index(
        pq.read_table(workspace.catalog_path, columns=["item_id"])["item_id"].to_pylist()
    )
    progress(f"embeddings: {len(pairs)} pairs, {len(user_index)} users, {len(item_index)} items")
    learned = train_embeddings(
        user_index.get_indexer(pairs["user_id"]).astype(np.int64),
        item_index.get_indexer(pairs["item_id"]).astype(np.int64),
        len(user_index),
        len(item_index),
        config,
        progress,
    )
    users, items = learned.published()
    lookup = EmbeddingLookup(user_index, item_index, users, items)
    publish(workspace, lookup, newest_snapshot_time(workspace))
    return lookup


def publish(workspace: Workspace, lookup: EmbeddingLookup, at: datetime) -> None:
    """Write both tables stamped `at`, then load them into the online store."""
    for key, ids, vectors, directory, column in (
        (
            "user_id",
            lookup.user_index,
            lookup.users,
            workspace.user_embeddings_path,
            "user_embedding",
        ),
        (
            "item_id",
            lookup.item_index,
            lookup.items,
            workspace.item_embeddings_path,
            "item_embedding",
        ),
    ):
        table = pa.Table.from_pydict(
            {
                key: list(ids),
                "event_timestamp": pa.array([at] * len(ids), pa.timestamp("us", tz="UTC")),
                column: list(vectors.astype(np.float32)),
            },
            schema=pa.schema(
                [
                    (key, pa.string()),
                    ("event_timestamp", pa.timestamp("us", tz="UTC")),
                    (column, pa.list_(pa.float32())),
                ]
            ),
        )
        write_snapshot(table, snapshot_file(directory, at))
    store.materialize(workspace, only=list(names.EMBEDDING_VIEWS))
