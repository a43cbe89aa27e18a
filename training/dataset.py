"""Point-in-time training sets from Feast.

Positives are the first cart, purchase or rating of each (user, item) pair
in the training events, or those training.stacking keeps for the ranker; each
gets `negatives` items drawn uniformly from the catalog at the same timestamp.
Feast's get_historical_features then joins each row to the latest feature
snapshot at or before its event, so no example sees features computed from
its own future.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features import names
from features.model_inputs import QUERY_INPUTS, assemble
from features.schema import POSITIVE_EVENTS
from features.scoring import combined_bias, rowwise_cosine
from features.store import open_store
from features.workspace import Workspace

if TYPE_CHECKING:
    from feast import FeatureStore

    from training.publish import EmbeddingLookup, FoldLookup


@dataclass(frozen=True)
class TrainingSet:
    features: np.ndarray  # float32 [n, F]
    labels: np.ndarray  # float32 [n]
    users: np.ndarray  # object [n], for grouping in evaluation


def first_positives(workspace: Workspace) -> pd.DataFrame:
    """Each (user_id, item_id) pair's first positive event, at or after the first
    snapshot (before it there are no features to join), in time order."""
    files = [str(f) for f in workspace.event_files()]
    events = ds.dataset(files, format="parquet").to_table(
        columns=["user_id", "item_id", "event_type", "ts"]
    )
    events = events.filter(pc.is_in(events["event_type"], pa.array(sorted(POSITIVE_EVENTS))))
    positives = (
        events.to_pandas()
        .sort_values("ts", kind="stable")
        .drop_duplicates(["user_id", "item_id"], keep="first")
    )
    first_snapshot = pc.min(
        pq.read_table(workspace.user_features_path, columns=["event_timestamp"])[0]
    ).as_py()
    kept: pd.DataFrame = positives[positives["ts"] >= first_snapshot]
    return kept[["user_id", "item_id", "ts"]].reset_index(drop=True)


def entity_rows(
    workspace: Workspace,
    negatives: int,
    seed: int,
    max_positives: int = 0,
    positives: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """(user_id, item_id, event_timestamp, label) rows to join features onto: the
    positives given (user_id, item_id, ts), or every first positive, each with
    `negatives` uniform catalogue items at its time."""
    if positives is None:
        positives = first_positives(workspace)
    if max_positives and len(positives) > max_positives:  # a seeded sample bounds the cost
        positives = positives.sample(n=max_positives, random_state=seed).sort_values("ts")
    catalog = pq.read_table(workspace.catalog_path, columns=["item_id"])["item_id"].to_numpy()
    rng = np.random.default_rng(seed)
    n = len(positives)
    sampled = catalog[rng.integers(0, catalog.size, size=n * negatives)]
    negative_rows = pd.DataFrame(
        {
            "user_id": np.repeat(positives["user_id"].to_numpy(), negatives),
            "item_id": sampled,
            "event_timestamp": np.repeat(positives["ts"].to_numpy(), negatives),
            "label": 0.0,
        }
    )
    negative_rows = negative_rows[
        negative_rows["item_id"].to_numpy() != np.repeat(positives["item_id"].to_numpy(), negatives)
    ]
    positive_rows = pd.DataFrame(
        {
            "user_id": positives["user_id"].to_numpy(),
            "item_id": positives["item_id"].to_numpy(),
            "event_timestamp": positives["ts"].to_numpy(),
            "label": 1.0,
        }
    )
    return _unique_timestamps(pd.concat([positive_rows, negative_rows], ignore_index=True))


def _unique_timestamps(rows: pd.DataFrame) -> pd.DataFrame:
    """Shift rows sharing (user, timestamp) back by a microsecond or more, until no
    two of a user's rows share one.

    Feast's file offline store de-duplicates on each view's join keys plus the
    timestamp, so a positive and its negatives at one instant would collapse
    to one row. Shifting back, never forward, cannot reach a later snapshot.
    Per user, newest first, row i gets min(t_i, t'_(i-1) - 1 us), which is
    cummin(t_j + j us) - i us: one vectorised pass, however the ties fall.
    """
    order = rows.sort_values(["user_id", "event_timestamp"], ascending=[True, False], kind="stable")
    position = order.groupby("user_id", sort=False).cumcount()
    step = pd.to_timedelta(position, unit="us")
    lifted = (order["event_timestamp"] + step).groupby(order["user_id"], sort=False).cummin()
    rows.loc[order.index, "event_timestamp"] = lifted - step
    return rows


def historical_features(store: FeatureStore, rows: pd.DataFrame) -> pd.DataFrame:
    service = store.get_feature_service(names.RANKER_SERVICE)
    job = store.get_historical_features(entity_df=rows, features=service)
    frame: pd.DataFrame = job.to_df()
    return frame


def to_training_set(
    frame: pd.DataFrame, lookup: EmbeddingLookup | FoldLookup | None = None, query: bool = False
) -> TrainingSet:
    """Feature matrix via the serving path's own assembly.

    Rows whose user had no snapshot yet are dropped (Feast's file store drops
    most of them itself): the server never runs the model for a user without
    features, since cold start ranks by bias. query: the rows carry the query's
    relevance parts (QUERY_INPUTS), for a query-aware ranker.
    """
    frame = frame[frame["user_vector"].notna() & frame["item_vector"].notna()]
    frame = frame.sort_values(["event_timestamp", "user_id", "item_id"], kind="stable")
    users = np.stack(frame["user_vector"].to_numpy()).astype(np.float32)
    items = np.stack(frame["item_vector"].to_numpy()).astype(np.float32)
    user_bias = frame["user_bias"].to_numpy(np.float32)
    item_bias = frame["item_bias"].to_numpy(np.float32)
    similarity = rowwise_cosine(users, items)
    embedded = None
    if lookup is not None:
        # The embeddings are one artifact of this training run, joined by id.
        embedded = lookup.parts(frame["user_id"].to_numpy(), frame["item_id"].to_numpy())
    features = assemble(
        similarity=similarity,
        bias=combined_bias(user_bias, item_bias),
        user_vector=users,
        user_bias=user_bias,
        user_activity=frame["user_activity"].to_numpy(np.float32),
        item_vectors=items,
        item_bias=item_bias,
        item_conversion=frame["item_conversion"].to_numpy(np.float32),
        item_price=frame["item_price"].to_numpy(np.float32),
        embedding_parts=embedded,
        query_parts=frame[list(QUERY_INPUTS)].to_numpy(np.float32) if query else None,
    )
    return TrainingSet(features, frame["label"].to_numpy(np.float32), frame["user_id"].to_numpy())


def build(
    workspace: Workspace,
    negatives: int = 4,
    seed: int = 0,
    lookup: EmbeddingLookup | FoldLookup | None = None,
    max_positives: int = 0,
    positives: pd.DataFrame | None = None,
    search: pd.DataFrame | None = None,
) -> TrainingSet:
    """The interaction rows, and the search rows (training.search_rows) when given:
    then every row carries the query parts, 0 for the interaction rows."""
    rows = entity_rows(workspace, negatives, seed, max_positives, positives)
    if search is not None:
        for name in QUERY_INPUTS:
            rows[name] = 0.0
        rows = _unique_timestamps(pd.concat([rows, search], ignore_index=True))
    frame = historical_features(open_store(workspace), rows)
    return to_training_set(frame, lookup, query=search is not None)
