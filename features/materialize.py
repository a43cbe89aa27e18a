"""Materialization at bulk speed, into Feast's own online layout.

Feast's stock path reads a view's whole range into memory and writes it a row
and a proto at a time (137-888 rows/s here; Feast issues #1969 and #6307). This
one gives the same store, as Feast's get_online_features reads it back, with:

- the latest row per entity in [start, end), found in two streaming passes over
  the offline parquet: first the keys and times of each row group, keeping the
  latest time per entity and the row group that holds it (memory: entities, not
  rows); then only the row groups that hold a winner, in Arrow batches;
- each batch serialised as whole columns (features.online_layout);
- each batch written in one transaction on SQLite, or two pipelined round trips
  on Redis and Redis Cluster (the stored times, then the newer rows);
- the registry's materialization interval recorded per view, as Feast records
  it, so `materialize --incremental` and the servers' cache refresh go on working.

Memory is one batch and the writer's buffers. A write replaces a row, or on
Redis skips one stored as new or newer (Feast's rule): a killed run, run again,
gives the same store.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from features.online_layout import (
    EntityKeys,
    feature_field,
    float_list_values,
    float_values,
    redis_client,
    redis_timestamp,
    sqlite_event_ts,
)

if TYPE_CHECKING:
    from feast import FeatureStore

BATCH_ROWS = 20_000
# Row groups' latest rows are folded together once this many are held: few
# merges, and memory of a few times the entities at most.
MERGE_ROWS = 1_000_000
TIMESTAMP = "event_timestamp"
US = pa.timestamp("us", tz="UTC")
# Bulk writes take longer than a served read: a pipeline of a batch gets this long.
WRITE_TIMEOUT_SECONDS = 60.0


class MaterializeError(ValueError):
    """The online store cannot take this materialization (a message for the operator)."""


@dataclass(frozen=True)
class ViewTable:
    """One feature view's offline table: where it is and what its rows carry."""

    view: str
    key: str
    path: Path
    features: tuple[str, ...]
    vectors: frozenset[str]  # the list<float32> features; the others are float32


def view_table(view: Any, path: Path) -> ViewTable:
    """A registered FeatureView's table, its features typed as the registry types them."""
    from feast.types import Array, Float32

    if len(view.join_keys) != 1:
        raise MaterializeError(
            f"{view.name} has {len(view.join_keys)} join keys; use --writer feast"
        )
    vectors = frozenset(f.name for f in view.features if f.dtype == Array(Float32))
    odd = [f.name for f in view.features if f.name not in vectors and f.dtype != Float32]
    if odd:
        raise MaterializeError(
            f"{view.name}: {', '.join(odd)} not float32 or a float32 list; use --writer feast"
        )
    features = tuple(f.name for f in view.features)
    return ViewTable(view.name, view.join_keys[0], path, features, vectors)


@dataclass(frozen=True)
class Encoded:
    """A batch of winning rows, serialised: what every writer needs, once."""

    keys: list[bytes]
    values: dict[str, list[bytes]]  # feature -> serialised ValueProto per row
    texts: dict[str, list[str | None]]  # feature -> SQLite's value_text per row
    times: pa.Array  # timestamp[us, UTC] per row


def _window(start: datetime, end: datetime) -> ds.Expression:
    ts = ds.field(TIMESTAMP)
    return (ts >= pa.scalar(start, US)) & (ts < pa.scalar(end, US))


class LatestRows:
    """The latest row per entity of one offline table within [start, end)."""

    def __init__(self, table: ViewTable, start: datetime, end: datetime) -> None:
        self.table = table
        self._filter = _window(start, end)
        self._groups: list[ds.ParquetFileFragment] = []
        # key, latest time (int64 us), index of the row group that holds it
        self._latest: pa.Table | None = None

    def scan(self) -> int:
        """Pass 1: keys and times only, a row group at a time; returns the entities found."""
        dataset = ds.dataset(self.table.path, format="parquet")
        key = self.table.key
        pending: list[pa.Table] = []
        held = 0
        for fragment in dataset.get_fragments():
            for group in fragment.split_by_row_group(filter=self._filter):
                found = group.to_table(columns=[key, TIMESTAMP], filter=self._filter)
                if found.num_rows == 0:
                    continue
                index = len(self._groups)
                self._groups.append(group)
                latest = found.group_by(key).aggregate([(TIMESTAMP, "max")])
                ts = latest[f"{TIMESTAMP}_max"].cast(pa.int64())
                where = pa.array(np.full(latest.num_rows, index, dtype=np.int64))
                pending.append(pa.table({key: latest[key], "ts": ts, "group": where}))
                held += latest.num_rows
                if held >= MERGE_ROWS:
                    self._merge(pending)
                    pending, held = [], 0
        self._merge(pending)
        return 0 if self._latest is None else self._latest.num_rows

    def _merge(self, pending: list[pa.Table]) -> None:
        """Fold row groups' latest rows into the running latest: one row per key."""
        if not pending:
            return
        both = pa.concat_tables(pending if self._latest is None else [self._latest, *pending])
        key = self.table.key
        best = both.group_by(key).aggregate([("ts", "max")]).rename_columns([key, "ts"])
        winners = both.join(best, keys=[key, "ts"], join_type="inner")
        # Equal times in two row groups: the later group's row, as a later write would.
        self._latest = (
            winners.group_by([key, "ts"])
            .aggregate([("group", "max")])
            .rename_columns([key, "ts", "group"])
        )

    def batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[pa.Table]:
        """Pass 2: the winning rows, read only from the row groups that hold them."""
        if self._latest is None:
            return
        key = self.table.key
        columns = [key, TIMESTAMP, *self.table.features]
        group_of = self._latest["group"].to_numpy()
        for index, group in enumerate(self._groups):
            wanted = self._latest.filter(pa.array(group_of == index))
            if wanted.num_rows == 0:
                continue
            for batch in group.to_batches(
                columns=columns, filter=self._filter, batch_size=batch_rows
            ):
                rows = pa.Table.from_batches([batch])
                at = pc.index_in(rows[key], value_set=wanted[key])
                latest = pc.take(wanted["ts"], at)
                keep = pc.fill_null(pc.equal(rows[TIMESTAMP].cast(pa.int64()), latest), False)
                chosen = _first_per_key(rows.filter(keep), key)
                if chosen.num_rows:
                    yield chosen


def _first_per_key(rows: pa.Table, key: str) -> pa.Table:
    """One row per key: a key twice at one time is a data error, not two writes."""
    if len(pc.unique(rows[key])) == rows.num_rows:
        return rows
    numbered = rows.append_column("_row", pa.array(np.arange(rows.num_rows)))
    first = numbered.group_by(key).aggregate([("_row", "min")])["_row_min"]
    return rows.take(first)


def encode(rows: pa.Table, table: ViewTable, keys: EntityKeys) -> Encoded:
    values: dict[str, list[bytes]] = {}
    texts: dict[str, list[str | None]] = {}
    for feature in table.features:
        column = rows[feature].combine_chunks()
        if feature in table.vectors:
            values[feature] = float_list_values(column).to_pylist()
            texts[feature] = [None] * rows.num_rows
        else:
            values[feature] = float_values(column).to_pylist()
            texts[feature] = _value_texts(column)
    return Encoded(keys.keys(rows[table.key].combine_chunks()), values, texts, rows[TIMESTAMP])


def _value_texts(column: pa.Array) -> list[str | None]:
    """Feast's SQLite value_text of a float_val: str() of the float32 as a Python
    float; None for an empty Value (null or NaN)."""
    raw = column.cast(pa.float32()).to_numpy(zero_copy_only=False).astype(np.float64)
    valid = column.is_valid().to_numpy(zero_copy_only=False) & ~np.isnan(raw)
    return [str(v) if ok else None for v, ok in zip(raw.tolist(), valid.tolist(), strict=True)]


def _per_time(times: pa.Array, convert: Any) -> list[Any]:
    """convert(moment) per row, computed once per distinct time (a snapshot has one)."""
    times = times.cast(US)
    distinct = pc.unique(times)
    converted = [convert(moment) for moment in distinct.to_pylist()]
    return [converted[i] for i in pc.index_in(times, value_set=distinct).to_pylist()]


class Writer(Protocol):
    def write(self, table: ViewTable, batch: Encoded) -> int:
        """Write a batch; returns the rows written."""
        ...

    def close(self) -> None: ...


class SqliteWriter:
    """Feast's SQLite table per view, a batch per transaction."""

    def __init__(self, path: Path, project: str) -> None:
        self._path = path
        self._project = project
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self._path.exists():
                raise MaterializeError(
                    f"no online store at {self._path}; run `shoprank features apply` first"
                )
            self._conn = sqlite3.connect(self._path, timeout=30.0)
            # WAL (set at apply) with NORMAL: a commit waits for no fsync; the store is
            # rebuilt from the offline tables, so a power cut costs a re-run, not data.
            self._conn.execute("PRAGMA synchronous=NORMAL")
        return self._conn

    def write(self, table: ViewTable, batch: Encoded) -> int:
        conn = self._connection()
        name = f"{self._project}_{table.view}"
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone():
            raise MaterializeError(
                f"the online store has no table {name}; run `shoprank features apply` first"
            )
        quoted = name.replace('"', '""')
        sql = (
            f'INSERT INTO "{quoted}" '
            "(entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, "
            "event_ts = excluded.event_ts, created_ts = excluded.created_ts"
        )
        stamps = _per_time(batch.times, sqlite_event_ts)
        with conn:
            for feature in table.features:
                conn.executemany(
                    sql,
                    zip(
                        batch.keys,
                        [feature] * len(batch.keys),
                        batch.values[feature],
                        batch.texts[feature],
                        stamps,
                        strict=True,
                    ),
                )
        return len(batch.keys)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class RedisWriter:
    """One hash per entity, as Feast's Redis store keeps it, on one node or a cluster
    (redis-py's cluster pipeline groups a batch by slot)."""

    def __init__(self, client: Any, project: str) -> None:
        self._client = client
        self._project = project.encode()

    def write(self, table: ViewTable, batch: Encoded) -> int:
        from google.protobuf.timestamp_pb2 import Timestamp

        stamp_field = f"_ts:{table.view}".encode()
        fields = [feature_field(table.view, f) for f in table.features]
        keys = [key + self._project for key in batch.keys]
        stamps = _per_time(batch.times, redis_timestamp)
        nanos = _per_time(batch.times, _epoch_nanos)
        with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, stamp_field)
            stored = pipe.execute()
        written = 0
        with self._client.pipeline(transaction=False) as pipe:
            for i, key in enumerate(keys):
                previous = stored[i]
                if previous:  # Feast's rule: a row as new or newer stays
                    old = Timestamp.FromString(previous)
                    if old.seconds * 1_000_000_000 + old.nanos >= nanos[i]:
                        continue
                mapping = {stamp_field: stamps[i]}
                for feature, field_name in zip(table.features, fields, strict=True):
                    mapping[field_name] = batch.values[feature][i]
                pipe.hset(key, mapping=mapping)
                written += 1
            pipe.execute()
        return written

    def close(self) -> None:
        self._client.close()


def _epoch_nanos(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def writer_for(store: FeatureStore) -> Writer:
    from features.store import sqlite_online_path

    config = store.config
    if config.registry.enable_online_feature_view_versioning:
        raise MaterializeError(
            "versioned feature views are not in the fast layout; use --writer feast"
        )
    online = config.online_store
    path = sqlite_online_path(config)
    if path is not None:
        if getattr(online, "vector_enabled", False):
            raise MaterializeError(
                "sqlite vector_enabled is not in the fast layout; use --writer feast"
            )
        return SqliteWriter(path, config.project)
    if online.type == "redis":
        connection = f"{online.connection_string},socket_timeout={WRITE_TIMEOUT_SECONDS}"
        if online.key_ttl_seconds:
            raise MaterializeError(
                "Redis key_ttl_seconds is not in the fast layout; use --writer feast"
            )
        return RedisWriter(redis_client(online.redis_type, connection), config.project)
    raise MaterializeError(f"no fast writer for online store {online.type}; use --writer feast")


def write_views(
    store: FeatureStore,
    paths: dict[str, Path],
    starts: dict[str, datetime],
    end: datetime,
    progress: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, int]:
    """Materialize each view's latest rows (its offline table at paths[view]) in
    [starts[view], end); returns the entities written per view."""
    from tqdm import tqdm

    if batch_rows < 1:
        raise ValueError(f"--batch-rows {batch_rows}: a batch holds at least one entity")
    views = {name: store.get_feature_view(name) for name in paths}
    tables = [view_table(views[name], path) for name, path in paths.items()]
    keys = {
        key: EntityKeys(key, store.config.entity_key_serialization_version)
        for key in {t.key for t in tables}
    }
    writer = writer_for(store)
    counts: dict[str, int] = {}
    try:
        for table in tables:
            latest = LatestRows(table, starts[table.view], end)
            total = latest.scan()
            bar = tqdm(
                total=total,
                desc=f"materialize {table.view}",
                unit="row",
                disable=not progress,
                file=sys.stderr,
            )
            with closing(bar):
                for rows in latest.batches(batch_rows):
                    writer.write(table, encode(rows, table, keys[table.key]))
                    bar.update(rows.num_rows)
            view = views[table.view]
            store.registry.apply_materialization(view, store.project, starts[table.view], end)
            counts[table.view] = total
    finally:
        writer.close()
    return counts
