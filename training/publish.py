"""Learned embeddings: trained on the training interactions, published back to Feast.

The published vectors are those whose plain dot product is the model's score
(an item bias rides along as one more column), so the server needs no model
to compute the embedding score: it reads two features and takes a dot product.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

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
from training.peers import AlsConfig, best, timed, train_als, validation_groups
from training.stacking import without

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


@dataclass(frozen=True)
class FoldLookup:
    """Out-of-fold embedding parts, for the ranker's training rows: each (user, item)
    row is scored by the ALS fitted without that pair's fold, so a training positive
    scores as an unseen pair does, as the held-out item does when served."""

    folds: list[EmbeddingLookup]

    def parts(self, user_ids: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fold = fold_of(user_ids, item_ids, len(self.folds))
        score = np.zeros(fold.size, np.float32)
        cosine = np.zeros(fold.size, np.float32)
        for f, lookup in enumerate(self.folds):
            rows = np.flatnonzero(fold == f)
            score[rows], cosine[rows] = lookup.parts(user_ids[rows], item_ids[rows])
        return score, cosine


def fold_of(user_ids: np.ndarray, item_ids: np.ndarray, folds: int) -> np.ndarray:
    """A pair's fold: a hash of its ids, so a pair falls in one fold whatever the rows."""
    return np.fromiter(
        (
            zlib.crc32(f"{u}\x00{i}".encode()) % folds
            for u, i in zip(user_ids, item_ids, strict=True)
        ),
        np.int64,
        len(user_ids),
    )


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


@dataclass(frozen=True)
class Published:
    """The embeddings served (the best on validation), and every learner's figures."""

    lookup: EmbeddingLookup
    learner: str
    # per learner: validation HR@10 and NDCG@10 (empty without a stack), seconds
    learners: dict[str, dict[str, float]]
    peers: dict[str, EmbeddingLookup]  # every learner's vectors, for the test table
    pairs: int  # the choice pairs the embeddings trained on
    # What the ranker's training rows are scored with: the published vectors, or
    # out-of-fold ones (FoldLookup).
    training: EmbeddingLookup | FoldLookup


def learn_and_publish(
    workspace: Workspace,
    config: EmbeddingConfig,
    progress: Callable[[str], None],
    stack: pd.DataFrame | None = None,
    als: AlsConfig | None = None,
    folds: int = 0,
) -> Published:
    """Train MF (and ALS) on the training choices, the stack's pairs left out; publish
    the best on the stack (training.peers), or MF without a stack."""
    if folds and (als is None or stack is not None):
        raise ValueError("out-of-fold scores need ALS, and no stack")
    pairs = choices(workspace)
    if stack is not None:
        pairs = without(pairs, stack)
    user_index = pd.Index(sorted(pairs["user_id"].unique()))
    item_index = pd.Index(
        pq.read_table(workspace.catalog_path, columns=["item_id"])["item_id"].to_pylist()
    )
    progress(f"embeddings: {len(pairs)} pairs, {len(user_index)} users, {len(item_index)} items")
    users = user_index.get_indexer(pairs["user_id"]).astype(np.int64)
    items = item_index.get_indexer(pairs["item_id"]).astype(np.int64)
    if folds and als is not None:
        return _out_of_fold(
            workspace, pairs, (user_index, item_index), users, items, als, folds, progress
        )
    validation = None
    if stack is not None and len(stack):
        stack_users = user_index.get_indexer(stack["user_id"])
        stack_items = item_index.get_indexer(stack["item_id"])
        known = (stack_users >= 0) & (stack_items >= 0)  # a user the embeddings know
        validation = validation_groups(
            users, items, stack_users[known], stack_items[known], len(item_index)
        )
    sizes = (len(user_index), len(item_index))
    learned = [
        timed(
            "shoprank MF",
            lambda: train_embeddings(users, items, *sizes, config, progress),
            validation,
        )
    ]
    if als is not None:
        for factors, alpha in als.grid(validation is not None):
            fit = partial(train_als, users, items, *sizes, factors, alpha, als)
            learned.append(timed(f"implicit ALS f={factors} alpha={alpha:g}", fit, validation))
    for entry in learned:
        figures = "  ".join(f"{k} {v:.4f}" for k, v in entry.validation.items())
        progress(f"{entry.name}: {entry.seconds:.1f}s  validation {figures or '-'}")
    # Without a stack, MF as before; the test table's peers: MF, and ALS (the best
    # of its grid on validation, or its one untuned point).
    chosen = best(learned) if validation is not None else learned[0]
    finalists = learned[:1]
    if len(learned) > 1:
        finalists.append(best(learned[1:]) if validation is not None else learned[1])
    peers = {
        entry.name: EmbeddingLookup(user_index, item_index, *entry.embeddings.published())
        for entry in finalists
    }
    progress(f"embeddings published: {chosen.name}")
    publish(workspace, peers[chosen.name], newest_snapshot_time(workspace))
    table = {e.name: {**e.validation, "seconds": round(e.seconds, 1)} for e in learned}
    lookup = peers[chosen.name]
    return Published(lookup, chosen.name, table, peers, len(pairs), lookup)


def _out_of_fold(
    workspace: Workspace,
    pairs: pd.DataFrame,
    indexes: tuple[pd.Index, pd.Index],
    users: np.ndarray,
    items: np.ndarray,
    als: AlsConfig,
    folds: int,
    progress: Callable[[str], None],
) -> Published:
    """ALS on every pair, published; and once per fold without it, for the ranker's
    training rows. MF is left out: on MovieLens-1M one fit takes 230 s, so folds + 1
    fits would take over 20 minutes."""
    user_index, item_index = indexes
    sizes = (len(user_index), len(item_index))
    factors, alpha = als.untuned
    fold = fold_of(pairs["user_id"].to_numpy(), pairs["item_id"].to_numpy(), folds)
    parts = []
    for f in range(folds):
        kept = fold != f
        fit = partial(train_als, users[kept], items[kept], *sizes, factors, alpha, als)
        learned = timed(f"fold {f}", fit, None)
        progress(f"ALS without fold {f + 1}/{folds}: {learned.seconds:.1f}s")
        parts.append(EmbeddingLookup(user_index, item_index, *learned.embeddings.published()))
    name = f"implicit ALS f={factors} alpha={alpha:g}"
    entry = timed(name, partial(train_als, users, items, *sizes, factors, alpha, als), None)
    lookup = EmbeddingLookup(user_index, item_index, *entry.embeddings.published())
    progress(f"embeddings published: {name} ({entry.seconds:.1f}s)")
    publish(workspace, lookup, newest_snapshot_time(workspace))
    table = {name: {"seconds": round(entry.seconds, 1)}}
    return Published(lookup, name, table, {name: lookup}, len(pairs), FoldLookup(parts))


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
