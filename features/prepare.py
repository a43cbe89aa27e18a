"""Writes a data set into a workspace, all or nothing.

Every data set lands as the same four files (catalog, users, training events,
held-out events) plus a manifest. They are written into a temporary folder
beside ``data/`` and swapped in with one rename, so a failed or interrupted
run never leaves a half-written data set behind.
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

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.schema import CATALOG_SCHEMA, EVENTS_SCHEMA, USERS_SCHEMA
from features.workspace import Workspace


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
) -> Manifest:
    """Write (training, held-out) event chunks and the tables; swap them in at the end."""
    workspace.home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".data-", dir=workspace.home))
    try:
        pq.write_table(catalog.cast(CATALOG_SCHEMA), staging / workspace.catalog_path.name)
        pq.write_table(users.cast(USERS_SCHEMA), staging / workspace.users_path.name)
        counts, start, end = _write_events(staging, workspace, event_chunks)
        counts.update(items=catalog.num_rows, users=users.num_rows)
        manifest = Manifest(dataset, split_ts, start or split_ts, end or split_ts, counts, params)
        (staging / workspace.manifest_path.name).write_text(manifest.to_json())
        _swap_in(staging, workspace.data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write_events(
    staging: Path, workspace: Workspace, chunks: Iterable[tuple[pa.Table, pa.Table]]
) -> tuple[dict[str, int], datetime | None, datetime | None]:
    train_path = staging / workspace.events_path.name
    heldout_path = staging / workspace.heldout_path.name
    counts = {"events": 0, "heldout": 0}
    start: datetime | None = None
    end: datetime | None = None
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
                low, high = pc.min_max(table["ts"]).values()
                start = low.as_py() if start is None else min(start, low.as_py())
                end = high.as_py() if end is None else max(end, high.as_py())
    return counts, start, end


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
