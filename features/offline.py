"""Builds the timestamped feature tables of the offline store.

A snapshot at time t holds every user's and item's features computed from
the training events strictly before t, stamped t. Feast's point-in-time join
then gives each training example the latest snapshot at or before its event,
and materialization serves the newest. Tables are written one snapshot at a
time, so memory holds one snapshot, not the whole range.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.engineering import (
    Interactions,
    Vocabulary,
    item_stats,
    item_vectors,
    user_features,
)
from features.prepare import Manifest
from features.schema import CONVERSION_EVENTS, EVENT_WEIGHTS
from features.workspace import Workspace

MAX_SNAPSHOTS = 40


def user_table_schema() -> pa.Schema:
    return pa.schema(
        [
            ("user_id", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("user_vector", pa.list_(pa.float32())),
            ("user_bias", pa.float32()),
            ("user_activity", pa.float32()),
        ]
    )


def item_table_schema() -> pa.Schema:
    return pa.schema(
        [
            ("item_id", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("item_vector", pa.list_(pa.float32())),
            ("item_bias", pa.float32()),
            ("item_conversion", pa.float32()),
            ("item_price", pa.float32()),
        ]
    )


@dataclass(frozen=True)
class EventLog:
    """The training events, indexed and sorted by time."""

    user_ids: list[str]
    item_ids: list[str]
    ts: np.ndarray  # int64 microseconds since the epoch, sorted
    events: Interactions

    def before(self, t: datetime) -> Interactions:
        cut = int(np.searchsorted(self.ts, _micros(t), side="left"))
        e = self.events
        return Interactions(
            e.user[:cut], e.item[:cut], e.weight[:cut], e.converted[:cut], e.n_users, e.n_items
        )


@dataclass(frozen=True)
class Catalog:
    item_ids: list[str]
    vectors: np.ndarray
    price: np.ndarray  # float32, log-scaled into [0, 1]; 0 where unknown
    vocabulary: Vocabulary


def _micros(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def load_catalog(workspace: Workspace) -> Catalog:
    table = pq.read_table(workspace.catalog_path)
    attributes = table["attributes"].to_pylist()
    vocabulary = Vocabulary.from_attributes(attributes)
    price = np.nan_to_num(table["price"].to_numpy(zero_copy_only=False).astype(np.float64))
    scaled = np.log1p(np.maximum(price, 0.0))
    top = scaled.max() if scaled.size else 0.0
    price_norm = (scaled / top if top > 0 else scaled).astype(np.float32)
    return Catalog(
        item_ids=table["item_id"].to_pylist(),
        vectors=item_vectors(attributes, vocabulary),
        price=price_norm,
        vocabulary=vocabulary,
    )


def load_events(workspace: Workspace, catalog: Catalog) -> EventLog:
    events = pq.read_table(
        workspace.events_path, columns=["user_id", "item_id", "event_type", "ts"]
    )
    events = events.sort_by("ts")
    item_index = {item: i for i, item in enumerate(catalog.item_ids)}
    items = np.array([item_index.get(x, -1) for x in events["item_id"].to_pylist()])
    known = items >= 0  # events on items outside the catalog carry no attributes
    users_raw = np.asarray(events["user_id"].to_pylist(), dtype=object)[known]
    user_ids, user_idx = np.unique(users_raw.astype(str), return_inverse=True)
    kinds = np.asarray(events["event_type"].to_pylist(), dtype=object)[known]
    weight = np.array([EVENT_WEIGHTS.get(k, 0.0) for k in kinds])
    converted = np.isin(kinds, list(CONVERSION_EVENTS))
    ts = events["ts"].cast(pa.int64()).to_numpy()[known]
    interactions = Interactions(
        user_idx.astype(np.int64),
        items[known].astype(np.int64),
        weight,
        converted,
        len(user_ids),
        len(catalog.item_ids),
    )
    return EventLog(user_ids.tolist(), catalog.item_ids, ts, interactions)


def snapshot_times(start: datetime, final: datetime, limit: int = MAX_SNAPSHOTS) -> list[datetime]:
    """Day boundaries after start, at most `limit`, ending with `final` itself."""
    first = (start + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    span_days = max(0, (final - first).days)
    step = max(1, -(-span_days // max(1, limit - 1)))
    times = [first + timedelta(days=d) for d in range(0, span_days + 1, step)]
    return [t for t in times if t < final] + [final]


def user_rows(log: EventLog, catalog: Catalog, t: datetime) -> pa.Table:
    feats = user_features(log.before(t), catalog.vectors)
    keep = np.flatnonzero(feats.active)
    return pa.Table.from_pydict(
        {
            "user_id": [log.user_ids[u] for u in keep],
            "event_timestamp": [t] * keep.size,
            "user_vector": list(feats.vector[keep]),
            "user_bias": feats.bias[keep],
            "user_activity": feats.activity[keep],
        },
        schema=user_table_schema(),
    )


def item_rows(log: EventLog, catalog: Catalog, t: datetime) -> pa.Table:
    stats = item_stats(log.before(t))
    return pa.Table.from_pydict(
        {
            "item_id": catalog.item_ids,
            "event_timestamp": [t] * len(catalog.item_ids),
            "item_vector": list(catalog.vectors),
            "item_bias": stats.bias,
            "item_conversion": stats.conversion,
            "item_price": catalog.price,
        },
        schema=item_table_schema(),
    )


def final_snapshot(manifest: Manifest, log: EventLog) -> datetime:
    """Just after the last training event, so the newest snapshot sees them all."""
    last = datetime.fromtimestamp(int(log.ts[-1]) / 1e6, tz=UTC) if log.ts.size else manifest.end_ts
    return max(last + timedelta(seconds=1), min(manifest.split_ts, manifest.end_ts))


def snapshot_file(directory: Path, t: datetime) -> Path:
    return directory / f"{t.astimezone(UTC):%Y%m%dT%H%M%S}.parquet"


def write_snapshot(table: pa.Table, path: Path) -> None:
    """Replace one snapshot file atomically: re-runs overwrite, never duplicate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # hidden: dataset readers skip it
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def build_offline_tables(
    workspace: Workspace, times: Sequence[datetime] | None = None
) -> dict[str, int]:
    """Write one file per snapshot and table; returns rows written per table."""
    manifest = Manifest.read(workspace.manifest_path)
    catalog = load_catalog(workspace)
    log = load_events(workspace, catalog)
    if times is None:
        times = snapshot_times(manifest.start_ts, final_snapshot(manifest, log))
    counts = {"user_features": 0, "item_features": 0}
    for t in times:
        users, items = user_rows(log, catalog, t), item_rows(log, catalog, t)
        write_snapshot(users, snapshot_file(workspace.user_features_path, t))
        write_snapshot(items, snapshot_file(workspace.item_features_path, t))
        counts["user_features"] += users.num_rows
        counts["item_features"] += items.num_rows
    workspace.vocabulary_path.write_text(json.dumps(list(catalog.vocabulary.tokens)))
    return counts
