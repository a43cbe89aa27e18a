"""Backfill: the timestamped feature tables of the offline store.

A snapshot at time t holds every user's and item's features computed from the
training events strictly before t, stamped t. Feast's point-in-time join then
gives each training example the latest snapshot at or before its event, and
materialization serves the newest.

The backfill walks its snapshot times in order, reading only the events of
each window (t_prev, t] in batches and folding them into running aggregates,
so memory holds the aggregates (users x items touched) and one batch, not the
event history or the range. Each snapshot is one parquet file per table (the
Feast sources are the folders), replaced atomically: a re-run rewrites the
same files, and a run killed halfway leaves whole snapshots only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.engineering import (
    Aggregates,
    Interactions,
    Vocabulary,
    item_stats,
    item_vectors,
    user_features,
)
from features.history import history_table
from features.item_text import item_text_table
from features.prepare import Manifest
from features.schema import CONVERSION_EVENTS, EVENT_WEIGHTS
from features.validation import Rejections, valid_catalog, valid_events
from features.workspace import Workspace

MAX_SNAPSHOTS = 40
BATCH_ROWS = 250_000
# What a reader of one snapshot holds at once (features.materialize reads a row
# group whole): 131,072 users of 256 float32 dims is 128 MiB.
SNAPSHOT_ROW_GROUP_ROWS = 131_072


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
class Catalog:
    item_ids: list[str]
    vectors: np.ndarray
    price: np.ndarray  # float32, log-scaled into [0, 1]; 0 where unknown
    vocabulary: Vocabulary


@dataclass
class BackfillReport:
    snapshots: list[datetime]
    rows: dict[str, int] = field(
        default_factory=lambda: {
            "user_features": 0,
            "item_features": 0,
            "user_history": 0,
            "item_text": 0,
        }
    )
    events: int = 0
    rejections: Rejections = field(default_factory=Rejections)
    seconds: float = 0.0
    dry_run: bool = False

    replacing: int = 0

    def lines(self) -> list[str]:
        span = f"{self.snapshots[0]:%Y-%m-%d %H:%M} .. {self.snapshots[-1]:%Y-%m-%d %H:%M}"
        if self.dry_run:
            return [
                f"backfill would write {len(self.snapshots)} snapshots ({span}) per table from "
                f"{self.events} events; {self.replacing} of them replace existing files",
                f"  {self.rejections.summary()} (catalog checked; events are checked on the run)",
            ]
        return [
            f"backfill wrote {len(self.snapshots)} snapshots ({span}) from {self.events} events "
            f"in {self.seconds:.1f}s",
            *(f"  {table}: {rows} rows" for table, rows in self.rows.items()),
            f"  {self.rejections.summary()}",
        ]


def load_catalog(workspace: Workspace, rejections: Rejections | None = None) -> Catalog:
    table = valid_catalog(pq.read_table(workspace.catalog_path), rejections or Rejections())
    attributes = table["attributes"].to_pylist()
    vocabulary = Vocabulary.from_attributes(attributes)
    price = np.nan_to_num(table["price"].to_numpy(zero_copy_only=False).astype(np.float64))
    scaled = np.log1p(price)
    top = scaled.max() if scaled.size else 0.0
    price_norm = (scaled / top if top > 0 else scaled).astype(np.float32)
    return Catalog(
        item_ids=table["item_id"].to_pylist(),
        vectors=item_vectors(attributes, vocabulary),
        price=price_norm,
        vocabulary=vocabulary,
    )


class EventWindows:
    """The training events of one time window at a time, validated and indexed."""

    def __init__(self, paths: Sequence[Path], catalog: Catalog, rejections: Rejections) -> None:
        self._dataset = ds.dataset([str(p) for p in paths], format="parquet")
        self._item_index = {item: i for i, item in enumerate(catalog.item_ids)}
        self._known_items = pa.array(catalog.item_ids)
        self._rejections = rejections
        self.user_index: dict[str, int] = {}

    def _filter(self, start: datetime | None, end: datetime) -> ds.Expression:
        window = ds.field("ts") < pa.scalar(end, pa.timestamp("us", tz="UTC"))
        if start is not None:
            window &= ds.field("ts") >= pa.scalar(start, pa.timestamp("us", tz="UTC"))
        return window

    def count(self, start: datetime | None, end: datetime) -> int:
        return int(self._dataset.count_rows(filter=self._filter(start, end)))

    def window(self, start: datetime | None, end: datetime) -> Iterator[Interactions]:
        """Events with start <= ts < end (all before end when start is None)."""
        columns = ["user_id", "item_id", "event_type", "ts", "session_id", "query"]
        for batch in self._dataset.to_batches(
            columns=columns, filter=self._filter(start, end), batch_size=BATCH_ROWS
        ):
            good = valid_events(pa.Table.from_batches([batch]), self._known_items, self._rejections)
            if good.num_rows:
                yield self._indexed(good)

    def _indexed(self, events: pa.Table) -> Interactions:
        index = self.user_index
        users = [index.setdefault(u, len(index)) for u in events["user_id"].to_pylist()]
        items = [self._item_index[i] for i in events["item_id"].to_pylist()]
        kinds = events["event_type"].to_pylist()
        return Interactions(
            ts=pc.cast(events["ts"], pa.int64()).to_numpy(zero_copy_only=False),
            user=np.asarray(users, dtype=np.int64),
            item=np.asarray(items, dtype=np.int64),
            weight=np.asarray([EVENT_WEIGHTS[k] for k in kinds]),
            converted=np.isin(np.asarray(kinds, dtype=object), list(CONVERSION_EVENTS)),
            n_users=len(index),
            n_items=len(self._item_index),
        )


def snapshot_times(start: datetime, final: datetime, limit: int = MAX_SNAPSHOTS) -> list[datetime]:
    """Day boundaries after start, at most `limit`, ending with `final` itself."""
    first = (start + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    span_days = max(0, (final - first).days)
    step = max(1, -(-span_days // max(1, limit - 1)))
    times = [first + timedelta(days=d) for d in range(0, span_days + 1, step)]
    return [t for t in times if t < final] + [final]


def final_snapshot(manifest: Manifest, last_event: datetime | None) -> datetime:
    """Just after the last training event, so the newest snapshot sees them all."""
    last = last_event or manifest.end_ts
    return max(last + timedelta(seconds=1), min(manifest.split_ts, manifest.end_ts))


def default_times(workspace: Workspace) -> list[datetime]:
    manifest = Manifest.read(workspace.manifest_path)
    files = [str(f) for f in workspace.event_files()]
    column = ds.dataset(files, format="parquet").to_table(columns=["ts"])["ts"]
    last = pc.max(column).as_py() if len(column) else None
    return snapshot_times(manifest.start_ts, final_snapshot(manifest, last))


def user_rows(
    aggregates: Aggregates, user_ids: list[str], catalog: Catalog, t: datetime
) -> pa.Table:
    feats = user_features(aggregates, catalog.vectors)
    keep = np.flatnonzero(feats.active)
    return pa.Table.from_pydict(
        {
            "user_id": [user_ids[u] for u in keep],
            "event_timestamp": [t] * keep.size,
            "user_vector": list(feats.vector[keep]),
            "user_bias": feats.bias[keep],
            "user_activity": feats.activity[keep],
        },
        schema=user_table_schema(),
    )


def item_rows(aggregates: Aggregates, catalog: Catalog, t: datetime) -> pa.Table:
    stats = item_stats(aggregates)
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


def snapshot_file(directory: Path, t: datetime) -> Path:
    return directory / f"{t.astimezone(UTC):%Y%m%dT%H%M%S}.parquet"


def write_snapshot(table: pa.Table, path: Path) -> None:
    """Replace one snapshot file atomically: re-runs overwrite, never duplicate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # hidden: dataset readers skip it
    pq.write_table(table, tmp, row_group_size=SNAPSHOT_ROW_GROUP_ROWS)
    os.replace(tmp, path)


def backfill(
    workspace: Workspace,
    times: Sequence[datetime] | None = None,
    dry_run: bool = False,
    progress: bool = False,
) -> BackfillReport:
    """Compute and write the snapshots at `times` (default: the whole training range)."""
    started = time.perf_counter()
    times = sorted(times or default_times(workspace))
    report = BackfillReport(snapshots=list(times), dry_run=dry_run)
    catalog = load_catalog(workspace, report.rejections)
    events = EventWindows(workspace.event_files(), catalog, report.rejections)
    if dry_run:
        report.events = events.count(None, times[-1])
        report.replacing = sum(
            snapshot_file(workspace.user_features_path, t).exists() for t in times
        )
    else:
        _run(workspace, times, catalog, events, report, progress)
    report.seconds = time.perf_counter() - started
    return report


def _run(
    workspace: Workspace,
    times: Sequence[datetime],
    catalog: Catalog,
    events: EventWindows,
    report: BackfillReport,
    progress: bool,
) -> None:
    from tqdm import tqdm

    aggregates = Aggregates.empty(len(catalog.item_ids))
    previous: datetime | None = None
    for t in tqdm(times, desc="backfill", unit="snapshot", disable=not progress, file=sys.stderr):
        for batch in events.window(previous, t):
            aggregates = aggregates.plus(batch)
            report.events += batch.user.size
        users = user_rows(aggregates, list(events.user_index), catalog, t)
        items = item_rows(aggregates, catalog, t)
        write_snapshot(users, snapshot_file(workspace.user_features_path, t))
        write_snapshot(items, snapshot_file(workspace.item_features_path, t))
        report.rows["user_features"] += users.num_rows
        report.rows["item_features"] += items.num_rows
        previous = t
    history = history_table(workspace.event_files(), catalog.item_ids, times[-1])
    write_snapshot(history, snapshot_file(workspace.user_history_path, times[-1]))
    report.rows["user_history"] += history.num_rows
    write_item_text(workspace, times[-1], report)
    workspace.vocabulary_path.write_text(json.dumps(list(catalog.vocabulary.tokens)))


def write_item_text(workspace: Workspace, t: datetime, report: BackfillReport) -> None:
    """The item text table at t (features.item_text), where a text encoder is exported."""
    table = item_text_table(workspace.catalog_path, workspace.text_encoder_dir, t)
    if table is not None:
        write_snapshot(table, snapshot_file(workspace.item_text_path, t))
        report.rows["item_text"] += table.num_rows


def build_offline_tables(
    workspace: Workspace, times: Sequence[datetime] | None = None
) -> dict[str, int]:
    """The whole backfill, quietly; returns rows written per table."""
    return backfill(workspace, times).rows
