"""The stream worker on a real workspace: Feast's online store, the event logs,
the offline event files. What it serves must equal the batch formula."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from features import names, store
from features.engineering import Interactions, UserFeatures, user_features
from features.event_log import LOG_SCHEMA, open_event_log
from features.offline import backfill
from features.schema import CONVERSION_EVENTS, EVENT_WEIGHTS
from features.stream_worker import StreamConfig, StreamWorker, load_snapshot
from features.streaming import datetime_micros
from features.workspace import Stores, Workspace
from tests.support import copy_workspace


def logged(workspace: Workspace, rows: int) -> pa.Table:
    """The first held-out events (after the snapshot), with ids, as the API logs them."""
    heldout = pq.read_table(workspace.heldout_path).slice(0, rows)
    ids = pa.array([f"ev-{k}" for k in range(heldout.num_rows)])
    return heldout.append_column("event_id", ids).select(LOG_SCHEMA.names).cast(LOG_SCHEMA)


def streamed_copy(source: Workspace, home: Path, stores: Stores) -> Workspace:
    workspace = copy_workspace(source, home, stores)
    store.apply(workspace)
    store.materialize(workspace)
    return workspace


def drain(worker: StreamWorker) -> None:
    while worker.step():
        pass


def batch_expectation(
    workspace: Workspace, events: pa.Table
) -> tuple[list[str], tuple[UserFeatures, list[int]]]:
    """user_features over the snapshot's events plus these, on the snapshot's basis."""
    snap = load_snapshot(workspace)
    index = dict(snap.user_index)
    users = events["user_id"].to_pylist()
    for user in users:
        index.setdefault(user, len(index))
    kinds = events["event_type"].to_pylist()
    later = Interactions(
        user=np.array([index[u] for u in users], dtype=np.int64),
        item=snap.item_positions(events["item_id"].to_pylist()),
        weight=np.array([EVENT_WEIGHTS[k] for k in kinds]),
        converted=np.array([k in CONVERSION_EVENTS for k in kinds]),
        n_users=len(index),
        n_items=len(snap.item_ids),
    )
    feats = user_features(snap.aggregates.plus(later), snap.vectors, snap.basis)
    touched = list(dict.fromkeys(users))
    return touched, (feats, [index[u] for u in touched])


def online(workspace: Workspace, users: list[str]) -> dict[str, list[object]]:
    refs = [*names.USER_REFS, f"{names.USER_RECENT_VIEW}:{names.RECENT_ITEMS}"]
    rows = [{names.USER_KEY: u} for u in users]
    found: dict[str, list[object]] = (
        store.open_store(workspace).get_online_features(refs, rows).to_dict()
    )
    return found


@pytest.fixture(params=["sqlite-shoprank", "sqlite-feast", "redis-shoprank"])
def case(request: pytest.FixtureRequest, workspace: Workspace) -> Iterator[tuple[Workspace, str]]:
    kind, writer = request.param.split("-")
    stores = Stores()
    if kind == "redis":
        stores = Stores(online_store="redis", redis=request.getfixturevalue("redis_url"))
    with tempfile.TemporaryDirectory() as home:
        yield streamed_copy(workspace, Path(home), stores), writer


def test_streamed_features_equal_the_batch_formula(case: tuple[Workspace, str]) -> None:
    workspace, writer = case
    events = logged(workspace, 1500)
    log = open_event_log(workspace)
    for start in range(0, events.num_rows, 400):
        log.append(events.slice(start, 400), 10_000)
    worker = StreamWorker(workspace, open_event_log(workspace), StreamConfig(300, 0.01, writer))
    worker.load()
    drain(worker)
    assert (worker.stats.events, worker.stats.duplicates, worker.stats.late) == (1500, 0, 0)
    touched, (feats, rows) = batch_expectation(workspace, events)
    served = online(workspace, touched)
    np.testing.assert_allclose(
        np.array(served["user_vector"], dtype=np.float32),
        feats.vector[rows],
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_array_equal(served["user_bias"], feats.bias[rows])
    np.testing.assert_array_equal(served["user_activity"], feats.activity[rows])
    # Recent items: the user's last distinct items, newest first, the streamed ones on top.
    first = touched[0]
    mine = events.filter(pc.equal(events["user_id"], first))
    newest = list(dict.fromkeys(reversed(mine["item_id"].to_pylist())))
    recent: list[list[str]] = served[names.RECENT_ITEMS]  # type: ignore[assignment]
    assert recent[0][: len(newest)] == newest[:20]
    # And the events are in the offline event files, for the next backfill.
    files = workspace.event_files()
    assert len(files) > 1
    kept = pq.read_table(files[1:][0].parent)
    assert kept.num_rows == 1500
    assert sorted(kept["ts"].to_pylist()) == sorted(events["ts"].to_pylist())
    worker.close()


def test_a_redelivered_batch_counts_once_and_a_new_snapshot_starts_over(
    workspace: Workspace, tmp_path: Path
) -> None:
    workspace = streamed_copy(workspace, tmp_path / "home", Stores())
    events = logged(workspace, 600)
    log = open_event_log(workspace)
    log.append(events, 10_000)
    worker = StreamWorker(workspace, open_event_log(workspace), StreamConfig(250, 0.01))
    worker.load()
    delivery = worker.log.read(250, 0.01)
    assert delivery is not None
    worker.apply(delivery)
    worker.apply(delivery)  # at least once: the same batch again, as after a crash
    drain(worker)
    assert (worker.stats.events, worker.stats.duplicates) == (600, 250)
    touched, (feats, rows) = batch_expectation(workspace, events)
    np.testing.assert_array_equal(
        online(workspace, touched)["user_activity"],
        feats.activity[rows],
    )
    worker.close()
    # The data team backfills (the logged events included) and materializes: the
    # worker's next look at the snapshot starts it over on the new one.
    report = backfill(workspace)
    assert report.events == pq.read_metadata(workspace.events_path).num_rows + 600
    store.materialize(workspace)
    restarted = StreamWorker(workspace, open_event_log(workspace), StreamConfig(250, 0.01))
    restarted.load()
    assert restarted.snapshot is not None
    assert restarted.snapshot.at_micros > datetime_micros(max(events["ts"].to_pylist()))
    snapshot_users = online(workspace, touched)
    last = pq.read_table(sorted(workspace.user_features_path.glob("*.parquet"))[-1])
    batch = dict(zip(last["user_id"].to_pylist(), last["user_activity"].to_pylist(), strict=True))
    assert snapshot_users["user_activity"] == [batch[u] for u in touched]
    restarted.close()


def test_a_batch_pending_at_a_restart_over_a_new_state_counts_once(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after a batch's offline part and state commit, before its ack; then a
    start over (here: a state of an older format). The replay of the logged parts
    leaves out that batch's part, and the log's redelivery applies it once."""
    workspace = streamed_copy(workspace, tmp_path / "home", Stores())
    events = logged(workspace, 600)
    open_event_log(workspace).append(events, 10_000)
    worker = StreamWorker(workspace, open_event_log(workspace), StreamConfig(250, 0.01))
    worker.load()
    assert worker.step() == 250

    def crash(delivery: object) -> None:
        raise KeyboardInterrupt("killed before the ack")

    monkeypatch.setattr(worker.log, "ack", crash)
    with pytest.raises(KeyboardInterrupt):
        worker.step()
    worker.close()
    assert len(list(workspace.logged_events_dir.glob("*.parquet"))) == 2
    with sqlite3.connect(workspace.stream_dir / "worker.sqlite") as db:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'format'")
    restarted = StreamWorker(workspace, open_event_log(workspace), StreamConfig(250, 0.01))
    restarted.load()  # replays the first batch's part only
    drain(restarted)
    assert (restarted.stats.events, restarted.stats.duplicates) == (350, 0)
    touched, (feats, rows) = batch_expectation(workspace, events)
    np.testing.assert_array_equal(online(workspace, touched)["user_activity"], feats.activity[rows])
    restarted.close()
