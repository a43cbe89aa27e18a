"""`shoprank features stream`: the event log, applied to the online store.

Per batch, in this order:
1. read events from the log (at least once: after a crash, the unacknowledged
   tail comes again);
2. drop the ids already applied (features.stream_state), and repeats in the batch;
3. fold the rest into the users' running sums (features.streaming.apply);
4. write the changed users' features and recent items to the online store;
5. append the events to the offline event files (one parquet file per batch,
   named by its first log position, so a batch redone after a crash replaces
   its own file rather than adding a second);
6. commit the users' states and the applied ids in one transaction;
7. acknowledge the batch to the log.

A crash between any two steps redoes the batch from the last commit, with the
same result: an event is never lost, and never counted twice.

When a newer snapshot is materialized (the marker features.store writes), the
worker starts over on it: a new basis, no states, then the logged events at or
after the new snapshot's time replayed from the offline files, so a user's
streamed features again equal the formula on the new snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features import names
from features.engineering import Aggregates
from features.event_log import DEDUP_SECONDS, Delivery, EventLog
from features.schema import EVENTS_SCHEMA
from features.stream_state import StreamState
from features.streaming import (
    Snapshot,
    UserState,
    apply,
    served,
    snapshot_of,
    snapshot_time,
)
from features.validation import Rejections
from features.workspace import Workspace

log = logging.getLogger(__name__)

WRITERS = ("shoprank", "feast")
BATCH_EVENTS = 5_000
BLOCK_SECONDS = 0.05
RETRY_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)  # back-off while the store or the log is down
SNAPSHOT_POLL_SECONDS = 2.0


class StreamError(ValueError):
    """The worker cannot start (a message for the operator)."""


@dataclass(frozen=True)
class StreamConfig:
    batch_events: int = BATCH_EVENTS
    block_seconds: float = BLOCK_SECONDS
    writer: str = "shoprank"  # the online writer: features.materialize's, or Feast's own
    dedup_seconds: float = DEDUP_SECONDS


@dataclass
class StreamStats:
    events: int = 0  # applied
    duplicates: int = 0  # delivered again, or logged twice: skipped by id
    late: int = 0  # before the snapshot: kept offline, not streamed
    batches: int = 0
    failures: int = 0
    last_applied_at: float = 0.0  # wall clock of the last commit


def load_snapshot(workspace: Workspace) -> Snapshot:
    """The newest batch snapshot's basis and sums, from the events before its time."""
    from features.offline import EventWindows, load_catalog

    at = snapshot_time(workspace.user_features_path)
    if at is None:
        raise StreamError("no feature snapshot yet; run `shoprank features backfill` first")
    catalog = load_catalog(workspace)
    windows = EventWindows(workspace.event_files(), catalog, Rejections())
    aggregates = Aggregates.empty(len(catalog.item_ids))
    users, items, times = [], [], []
    for batch in windows.window(None, at):
        aggregates = aggregates.plus(batch)
        users.append(batch.user)
        items.append(batch.item)
        times.append(batch.ts if batch.ts is not None else np.zeros(batch.user.size, np.int64))
    history = tuple(
        np.concatenate(parts) if parts else np.zeros(0, np.int64) for parts in (users, items, times)
    )
    return snapshot_of(
        at,
        catalog.item_ids,
        catalog.vectors,
        aggregates,
        dict(windows.user_index),
        (history[0], history[1], history[2]),
    )


class OnlineWriter:
    """The changed users' rows into the online store, through features.materialize's
    bulk writer (Feast's layout, tested equal to Feast's) or Feast's write API."""

    def __init__(self, store: Any, kind: str) -> None:
        if kind not in WRITERS:
            raise StreamError(f"--writer {kind} is not one of {', '.join(WRITERS)}")
        self._store = store
        self._kind = kind
        self._fast: Any = None

    def load(self) -> None:
        if self._kind != "shoprank":
            return
        from features.materialize import view_table, writer_for
        from features.online_layout import EntityKeys

        views = (names.USER_VIEW, names.USER_RECENT_VIEW)
        tables = {v: view_table(self._store.get_feature_view(v), Path()) for v in views}
        keys = EntityKeys(names.USER_KEY, self._store.config.entity_key_serialization_version)
        self._fast = (writer_for(self._store), tables, keys)

    def write(self, view: str, rows: pa.Table) -> None:
        if self._kind == "feast":
            self._store.write_to_online_store(view, rows.to_pandas())
            return
        from features.materialize import encode

        writer, tables, keys = self._fast
        table = tables[view]
        writer.write(table, writer.prepare(table, encode(rows, table, keys)))

    def close(self) -> None:
        if self._fast is not None:
            self._fast[0].close()


def user_tables(
    snapshot: Snapshot, users: list[str], states: dict[str, UserState]
) -> tuple[pa.Table, pa.Table]:
    """The rows of the user view and the recent-items view for the users given."""
    listed = [states[u] for u in users]
    feats = served(snapshot, listed)
    stamps = pa.array([s.row_ts for s in listed], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    width = feats.vector.shape[1]
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(feats.vector.ravel()), width)
    features = pa.table(
        {
            names.USER_KEY: pa.array(users, pa.string()),
            "event_timestamp": stamps,
            "user_vector": vectors.cast(pa.list_(pa.float32())),
            "user_bias": pa.array(feats.bias, pa.float32()),
            "user_activity": pa.array(feats.activity, pa.float32()),
        }
    )
    recent = pa.table(
        {
            names.USER_KEY: pa.array(users, pa.string()),
            "event_timestamp": stamps,
            names.RECENT_ITEMS: pa.array([s.recent for s in listed], pa.list_(pa.string())),
        }
    )
    return features, recent


class StreamWorker:
    """One consumer of the log. Cheap to build; `load` opens everything."""

    def __init__(self, workspace: Workspace, event_log: EventLog, config: StreamConfig) -> None:
        self.workspace = workspace
        self.log = event_log
        self.config = config
        self.stats = StreamStats()
        self.snapshot: Snapshot | None = None
        self._state = StreamState(workspace.stream_dir / "worker.sqlite")
        self._writer: OnlineWriter | None = None
        self._marker_version: object = None
        self._kind = workspace.stores.event_log_kind

    def load(self) -> None:
        from features.store import open_store

        if self.config.batch_events < 1:
            raise StreamError(f"--batch-events {self.config.batch_events}: at least 1")
        if not self.workspace.repo_dir.exists():
            raise StreamError("no feature repo; run `shoprank features apply` first")
        store = open_store(self.workspace)
        self._writer = OnlineWriter(store, self.config.writer)
        self._writer.load()
        self._marker_version = self._marker()
        self._rebase(load_snapshot(self.workspace))

    def _marker(self) -> object:
        from features.store import marker_path

        try:
            return json.loads(marker_path(self.workspace).read_text()).get("version")
        except (OSError, ValueError):
            return None

    def _rebase(self, snapshot: Snapshot) -> None:
        """Build on this snapshot; if the state was on another, start over and replay
        the logged events at or after its time from the offline files."""
        self.snapshot = snapshot
        if self._state.basis_at() == snapshot.at_micros:
            return
        self._state.reset(snapshot.at_micros)
        logged = self._acknowledged_parts()
        if not logged:
            return
        at = pa.scalar(snapshot.at_micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        events = ds.dataset([str(f) for f in logged], format="parquet").to_table(
            filter=ds.field("ts") >= at
        )
        states = snapshot.initial(list(dict.fromkeys(events["user_id"].to_pylist())))
        applied = apply(snapshot, states, events)
        self._publish(applied.users, states)
        self._state.commit(states, [], time.time() - self.config.dedup_seconds)
        log.info("stream: rebased on %s, replayed %d logged events", snapshot.at, len(events))

    def _acknowledged_parts(self) -> list[Path]:
        """The logged parts of batches the log has acknowledged. A part of a batch still
        pending (a crash between its offline write and its ack) is left out: the log
        delivers that batch again, and it must be applied once, from there."""
        pending = self.log.first_pending()
        parts = []
        for part in sorted(self.workspace.logged_events_dir.glob("*.parquet")):
            kind, _, first = part.stem.partition("-")
            if kind == self._kind and pending is not None and first >= pending:
                continue
            parts.append(part)
        return parts

    def _publish(self, users: list[str], states: dict[str, UserState]) -> None:
        assert self._writer is not None and self.snapshot is not None
        for at in range(0, len(users), BATCH_EVENTS):
            chunk = users[at : at + BATCH_EVENTS]
            features, recent = user_tables(self.snapshot, chunk, states)
            self._writer.write(names.USER_VIEW, features)
            self._writer.write(names.USER_RECENT_VIEW, recent)

    def step(self) -> int:
        """One batch through steps 1-7; returns the events delivered (0: none waited)."""
        delivery = self.log.read(self.config.batch_events, self.config.block_seconds)
        if delivery is None:
            return 0
        self.apply(delivery)
        return len(delivery.positions)

    def apply(self, delivery: Delivery) -> None:
        snapshot = self.snapshot
        assert snapshot is not None, "StreamWorker.load first"
        events = delivery.events
        ids: list[str] = events["event_id"].to_pylist()
        done = self._state.applied(ids)
        fresh = []
        for event_id in ids:
            fresh.append(event_id not in done)
            done.add(event_id)
        new = events.filter(pa.array(fresh, pa.bool_()))
        self.stats.duplicates += len(ids) - new.num_rows
        touched = list(dict.fromkeys(new["user_id"].to_pylist()))
        states = self._state.users(touched, snapshot.vectors.shape[1])
        states.update(snapshot.initial([u for u in touched if u not in states]))
        applied = apply(snapshot, states, new)
        self._publish(applied.users, states)
        if new.num_rows:
            self._append_offline(delivery.first, new)
        self._state.commit(
            {u: states[u] for u in applied.users},
            new["event_id"].to_pylist(),
            time.time() - self.config.dedup_seconds,
        )
        self.log.ack(delivery)
        self.stats.events += new.num_rows - applied.late
        self.stats.late += applied.late
        self.stats.batches += 1
        self.stats.last_applied_at = time.time()

    def _append_offline(self, first: str, events: pa.Table) -> None:
        directory = self.workspace.logged_events_dir
        directory.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "user_id": events["user_id"],
                "item_id": events["item_id"],
                "event_type": events["event_type"],
                "ts": events["ts"],
                "session_id": pa.nulls(events.num_rows, pa.string()),
                "query": events["query"],
            }
        ).cast(EVENTS_SCHEMA)
        path = directory / f"{self._kind}-{first}.parquet"
        tmp = directory / f".{path.name}.tmp"  # hidden: dataset readers skip it
        pq.write_table(table, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def _check_snapshot(self) -> None:
        """Start over on a newer snapshot, once it is materialized."""
        version = self._marker()
        if version == self._marker_version:
            return
        self._marker_version = version
        at = snapshot_time(self.workspace.user_features_path)
        if self.snapshot is None or at != self.snapshot.at:
            self._rebase(load_snapshot(self.workspace))

    def run(self, stop: threading.Event, on_batch: Callable[[], None] | None = None) -> None:
        """Until stop is set: batches as they come; a failure (store or log down) is
        logged and retried with back-off, the batch read again from the log."""
        failures = 0
        checked = time.monotonic()
        while not stop.is_set():
            try:
                if time.monotonic() - checked > SNAPSHOT_POLL_SECONDS:
                    checked = time.monotonic()
                    self._check_snapshot()
                if self.step() and on_batch is not None:
                    on_batch()
                failures = 0
            except Exception as error:  # the store or the log: wait, then redo the batch
                self.stats.failures += 1
                wait = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning(
                    "stream: batch failed (%s: %s); retrying in %.1fs",
                    type(error).__name__,
                    error,
                    wait,
                )
                self.log.redeliver()
                stop.wait(wait)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._state.close()
        self.log.close()
