"""Writes a data set into a workspace, all or nothing.

Every data set lands as the same four files (catalog, users, training events,
held-out events) plus a manifest. They are written into a temporary folder
beside ``data/`` and swapped in with one rename, so a failed or interrupted
run never leaves a half-written data set behind.

Event files are sorted by time, in row groups of EVENT_ROW_GROUP_ROWS, so a
reader of one time window (each backfill snapshot) reads only the row groups
whose statistics overlap it. The sort is external: the chunks are spilled
into time buckets, then each bucket is sorted and appended, so memory holds a
bucket, never the whole history.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.schema import CATALOG_SCHEMA, EVENTS_SCHEMA, USERS_SCHEMA
from features.workspace import Workspace

EVENT_ROW_GROUP_ROWS = 65_536
# Time buckets of the external sort: about this many per row group's worth of
# events (skewed days share the rest), at most MAX_BUCKETS open spill files.
BUCKETS_PER_ROW_GROUP = 4
MAX_BUCKETS = 1024
SPILL_BATCH_ROWS = 262_144


@dataclass(frozen=True)
class Manifest:
    dataset: str
    # Training events are before split_ts (time splits) or not held out (leave-one-out).
    split_ts: datetime
    start_ts: datetime
    end_ts: datetime
    counts: dict[str, int]
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        body = {
            "dataset": self.dataset,
            "split_ts": self.split_ts.isoformat(),
            "start_ts": self.start_ts.isoformat(),
            "end_ts": self.end_ts.isoformat(),
            "counts": self.counts,
            "params": self.params,
        }
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        body = json.loads(path.read_text())
        return cls(
            dataset=body["dataset"],
            split_ts=datetime.fromisoformat(body["split_ts"]),
            start_ts=datetime.fromisoformat(body["start_ts"]),
            end_ts=datetime.fromisoformat(body["end_ts"]),
            counts=body["counts"],
            params=body.get("params", {}),
        )


def split_by_time(events: pa.Table, split_ts: datetime) -> tuple[pa.Table, pa.Table]:
    """(events before split_ts, events at or after it)."""
    before = pc.less(events["ts"], pa.scalar(split_ts, type=EVENTS_SCHEMA.field("ts").type))
    return events.filter(before), events.filter(pc.invert(before))


def write_dataset(
    workspace: Workspace,
    dataset: str,
    catalog: pa.Table,
    users: pa.Table,
    event_chunks: Iterable[tuple[pa.Table, pa.Table]],
    split_ts: datetime,
    params: dict[str, Any],
    row_group_rows: int = EVENT_ROW_GROUP_ROWS,
) -> Manifest:
    """Write (training, held-out) event chunks and the tables; swap them in at the end."""
    workspace.home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".data-", dir=workspace.home))
    try:
        pq.write_table(catalog.cast(CATALOG_SCHEMA), staging / workspace.catalog_path.name)
        pq.write_table(users.cast(USERS_SCHEMA), staging / workspace.users_path.name)
        counts, start, end = _write_events(staging, workspace, event_chunks, row_group_rows)
        counts.update(items=catalog.num_rows, users=users.num_rows)
        manifest = Manifest(dataset, split_ts, start or split_ts, end or split_ts, counts, params)
        (staging / workspace.manifest_path.name).write_text(manifest.to_json())
        _swap_in(staging, workspace.data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write_events(
    staging: Path,
    workspace: Workspace,
    chunks: Iterable[tuple[pa.Table, pa.Table]],
    row_group_rows: int,
) -> tuple[dict[str, int], datetime | None, datetime | None]:
    """The chunks as they come into unsorted files, then each file sorted by time."""
    train_path = staging / f".unsorted-{workspace.events_path.name}"
    heldout_path = staging / f".unsorted-{workspace.heldout_path.name}"
    counts = {"events": 0, "heldout": 0}
    # Per file, its earliest and latest time in microseconds: the sort's time span.
    spans: dict[str, tuple[int, int]] = {}
    with (
        pq.ParquetWriter(train_path, EVENTS_SCHEMA) as train_writer,
        pq.ParquetWriter(heldout_path, EVENTS_SCHEMA) as heldout_writer,
    ):
        for train, heldout in chunks:
            for table, writer, key in (
                (train, train_writer, "events"),
                (heldout, heldout_writer, "heldout"),
            ):
                if table.num_rows == 0:
                    continue
                writer.write_table(table.cast(EVENTS_SCHEMA))
                counts[key] += table.num_rows
                low, high = pc.min_max(table["ts"].cast(pa.int64())).values()
                seen = spans.get(key, (low.as_py(), high.as_py()))
                spans[key] = (min(seen[0], low.as_py()), max(seen[1], high.as_py()))
    for unsorted, target, key in (
        (train_path, workspace.events_path, "events"),
        (heldout_path, workspace.heldout_path, "heldout"),
    ):
        sort_by_time(unsorted, staging / target.name, row_group_rows, spans.get(key))
        unsorted.unlink()
    if not spans:
        return counts, None, None
    start = min(low for low, _ in spans.values())
    end = max(high for _, high in spans.values())
    return counts, _moment(start), _moment(end)


def _moment(micros: int) -> datetime:
    moment: datetime = pa.scalar(micros, pa.int64()).cast(EVENTS_SCHEMA.field("ts").type).as_py()
    return moment


def sort_by_time(
    source: Path, target: Path, row_group_rows: int, span: tuple[int, int] | None
) -> None:
    """Write source's events to target in time order (ties keep their order), in row
    groups of row_group_rows: spilled into equal time spans, each sorted in memory.
    span: the events' earliest and latest time in microseconds (None: no events)."""
    file = pq.ParquetFile(source)
    total = file.metadata.num_rows
    if total == 0 or span is None:
        pq.write_table(EVENTS_SCHEMA.empty_table(), target)
        return
    low, high = span
    count = min(MAX_BUCKETS, max(1, -(-total * BUCKETS_PER_ROW_GROUP // row_group_rows)))
    width = max(1, -(-(high - low + 1) // count))  # microseconds per bucket
    spill = target.with_name(f".buckets-{target.name}")
    spill.mkdir()
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        for batch in file.iter_batches(batch_size=SPILL_BATCH_ROWS):
            ts = batch.column("ts").cast(pa.int64()).to_numpy()
            bucket = (ts - low) // width
            order = np.argsort(bucket, kind="stable")
            ordered = batch.take(pa.array(order))
            edges = np.searchsorted(bucket[order], np.arange(count + 1))
            for b in np.flatnonzero(np.diff(edges)).tolist():
                if b not in writers:
                    writers[b] = pq.ParquetWriter(spill / f"{b:05d}.parquet", EVENTS_SCHEMA)
                part = ordered.slice(edges[b], edges[b + 1] - edges[b])
                writers[b].write_table(pa.Table.from_batches([part]))
        for writer in writers.values():
            writer.close()
        with pq.ParquetWriter(target, EVENTS_SCHEMA) as out:
            pending = EVENTS_SCHEMA.empty_table()  # carried over, so row groups are whole
            for b in sorted(writers):
                events = pq.read_table(spill / f"{b:05d}.parquet").sort_by("ts")
                pending = pa.concat_tables([pending, events])
                whole = pending.num_rows - pending.num_rows % row_group_rows
                if whole:
                    out.write_table(pending.slice(0, whole), row_group_size=row_group_rows)
                    pending = pending.slice(whole)
            if pending.num_rows:
                out.write_table(pending, row_group_size=row_group_rows)
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    """Replace target with staging; the old data stays until the new is in place."""
    if target.exists():
        retired = target.with_name(target.name + ".old")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)
