"""Backfill: exact rows, idempotent re-runs, a killed run resumed, bad rows reported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from features.offline import backfill, snapshot_file
from features.prepare import write_dataset
from features.schema import CATALOG_SCHEMA, EVENTS_SCHEMA, USERS_SCHEMA
from features.synthetic import SyntheticSpec, prepare
from features.workspace import Workspace

T0 = datetime(2026, 3, 1, tzinfo=UTC)
LOOSE_EVENTS = pa.schema([f.with_nullable(True) for f in EVENTS_SCHEMA])
DAY1, DAY2 = T0 + timedelta(days=1), T0 + timedelta(days=2)


def _event(user: str | None, item: str | None, kind: str, ts: datetime | None) -> dict[str, object]:
    return {
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "ts": ts,
        "session_id": None,
        "query": None,
    }


@pytest.fixture
def dirty(tmp_path: Path) -> Workspace:
    """Two good users over two days, and one bad row of each kind."""
    workspace = Workspace(tmp_path)
    catalog = pa.Table.from_pylist(
        [
            {"item_id": "i0", "title": None, "price": 5.0, "attributes": "category=a"},
            {"item_id": "i1", "title": None, "price": 7.0, "attributes": "category=b"},
            {"item_id": "bad", "title": None, "price": -1.0, "attributes": "category=a"},
        ],
        schema=CATALOG_SCHEMA,
    )
    h = timedelta(hours=1)
    events = pa.Table.from_pylist(
        [
            _event("u0", "i0", "view", T0 + h),
            _event("u0", "i0", "purchase", T0 + 2 * h),
            _event("u1", "i1", "view", DAY1 + h),
            _event(None, "i0", "view", T0 + h),  # null user
            _event("u2", "i0", "teleport", T0 + h),  # unknown event type
            _event("u2", "i0", "view", datetime(1970, 1, 1, tzinfo=UTC)),  # epoch zero
            _event("u2", "nope", "view", T0 + h),  # item not in catalog
            _event("u2", "bad", "view", T0 + h),  # item dropped for its negative price
        ],
        schema=LOOSE_EVENTS,
    )
    users = pa.Table.from_pylist([], schema=USERS_SCHEMA)
    empty = events.slice(0, 0).cast(EVENTS_SCHEMA)
    write_dataset(workspace, "dirty", catalog, users, [(empty, empty)], DAY2, {})
    # Incoming files need not be ours: nulls included, as a producer might send.
    pq.write_table(events, workspace.events_path)
    return workspace


def _table(directory: Path, t: datetime) -> list[tuple[object, ...]]:
    rows = pq.read_table(snapshot_file(directory, t)).to_pylist()
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in r.values()) for r in rows]


def test_backfill_writes_one_snapshot_per_time_with_exact_rows(dirty: Workspace) -> None:
    report = backfill(dirty, [DAY1, DAY2])
    assert report.rows == {
        "user_features": 3,
        "item_features": 4,
        "user_history": 1,
        "item_text": 0,
    }
    assert [r[:2] for r in _table(dirty.user_features_path, DAY1)] == [("u0", DAY1)]
    assert [r[:2] for r in _table(dirty.user_features_path, DAY2)] == [("u0", DAY2), ("u1", DAY2)]
    # u0 alone at day 1; u1 arrives on day 2: its vector is item i1's.
    assert _table(dirty.user_features_path, DAY2)[1][2] == [0.0, 1.0]
    # item bias log(2+|C|)/log(2+max|C|): day 1 |C| = [1, 0], day 2 [1, 1]
    day1 = _table(dirty.item_features_path, DAY1)
    assert [(r[0], r[3]) for r in day1] == [("i0", 1.0), ("i1", round(0.630930, 6))]
    assert [r[3] for r in _table(dirty.item_features_path, DAY2)] == [1.0, 1.0]


def test_the_user_history_holds_each_users_valid_conversions_at_the_last_snapshot(
    dirty: Workspace,
) -> None:
    backfill(dirty, [DAY1, DAY2])
    # u0 bought i0; u1 only viewed i1, which is no conversion
    assert _table(dirty.user_history_path, DAY2) == [("u0", DAY2, ["i0"])]
    assert sorted(p.name for p in dirty.user_history_path.iterdir()) == ["20260303T000000.parquet"]


def test_bad_rows_are_counted_by_reason_and_never_written(dirty: Workspace) -> None:
    report = backfill(dirty, [DAY2])
    assert dict(report.rejections.counts) == {
        "negative price": 1,
        "null or empty user_id": 1,
        "unknown event_type": 1,
        "timestamp missing or out of range": 1,
        "item not in catalog": 2,
    }
    assert report.events == 3
    users = pq.read_table(snapshot_file(dirty.user_features_path, DAY2))["user_id"].to_pylist()
    assert users == ["u0", "u1"]
    items = pq.read_table(snapshot_file(dirty.item_features_path, DAY2))["item_id"].to_pylist()
    assert items == ["i0", "i1"]


def test_a_re_run_rewrites_the_same_rows_without_duplicates(dirty: Workspace) -> None:
    backfill(dirty, [DAY1, DAY2])
    first = pq.read_table(dirty.user_features_path).sort_by("event_timestamp")
    backfill(dirty, [DAY1, DAY2])
    backfill(dirty, [DAY2])
    again = pq.read_table(dirty.user_features_path).sort_by("event_timestamp")
    assert again.equals(first)
    assert sorted(p.name for p in dirty.user_features_path.iterdir()) == [
        "20260302T000000.parquet",
        "20260303T000000.parquet",
    ]


def test_dry_run_says_what_it_would_write_and_writes_nothing(dirty: Workspace) -> None:
    report = backfill(dirty, [DAY1, DAY2], dry_run=True)
    assert not dirty.user_features_path.exists()
    assert report.events == 8 and report.replacing == 0
    assert report.lines()[0].startswith("backfill would write 2 snapshots")


def test_a_killed_backfill_re_run_completes_like_a_clean_run(tmp_path: Path) -> None:
    spec = SyntheticSpec(users=1500, items=300, days=40, seed=3)
    killed, clean = Workspace(tmp_path / "killed"), Workspace(tmp_path / "clean")
    prepare(killed, spec)
    prepare(clean, spec)
    command = [
        sys.executable,
        "-m",
        "server.cli",
        "features",
        "backfill",
        "--home",
        str(killed.home),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(killed.item_features_path.glob("*.parquet"))) < 3:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = len(list(killed.item_features_path.glob("*.parquet")))
    backfill(clean)
    total = len(list(clean.item_features_path.glob("*.parquet")))
    assert 3 <= written < total, "the kill did not land halfway"
    backfill(killed)
    for table in ("user_features_path", "item_features_path"):
        got = pq.read_table(getattr(killed, table)).sort_by([("event_timestamp", "ascending")])
        want = pq.read_table(getattr(clean, table)).sort_by([("event_timestamp", "ascending")])
        assert got.equals(want)


def test_events_are_stored_in_time_order_so_a_window_reads_only_its_row_groups(
    tmp_path: Path,
) -> None:
    workspace = Workspace(tmp_path)
    catalog = pa.Table.from_pylist(
        [{"item_id": "i0", "title": None, "price": 1.0, "attributes": "category=a"}],
        schema=CATALOG_SCHEMA,
    )
    # Ten days of 50 events each, shuffled and split over two chunks.
    moments = [T0 + timedelta(days=d, minutes=17 * k) for d in range(10) for k in range(50)]
    shuffled = [moments[(i * 7919) % len(moments)] for i in range(len(moments))]
    rows = [_event(f"u{i % 13}", "i0", "view", ts) for i, ts in enumerate(shuffled)]
    # Two events at one time, in chunk order: the sort must keep that order.
    tie = T0 + timedelta(days=3, seconds=1)
    rows[10] = _event("first", "i0", "view", tie)
    rows[400] = _event("second", "i0", "view", tie)
    events = pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)
    chunks = [(events.slice(0, 250), events.slice(0, 0)), (events.slice(250), events.slice(0, 7))]
    users = pa.Table.from_pylist([], schema=USERS_SCHEMA)
    write_dataset(workspace, "sorted", catalog, users, chunks, T0, {}, row_group_rows=64)

    stored = pq.read_table(workspace.events_path)
    ts = stored["ts"].to_pylist()
    assert ts == sorted(ts)
    assert sorted(stored.to_pylist(), key=repr) == sorted(events.to_pylist(), key=repr)
    users_at_tie = [r["user_id"] for r in stored.to_pylist() if r["ts"] == tie]
    assert users_at_tie == ["first", "second"]
    assert pq.read_table(workspace.heldout_path).num_rows == 7

    fragment = next(ds.dataset(workspace.events_path, format="parquet").get_fragments())
    assert fragment.num_row_groups == 8  # 500 events in groups of 64
    day = ds.field("ts") >= pa.scalar(T0 + timedelta(days=4), pa.timestamp("us", tz="UTC"))
    day &= ds.field("ts") < pa.scalar(T0 + timedelta(days=5), pa.timestamp("us", tz="UTC"))
    inside = [i for i, t in enumerate(ts) if T0 + timedelta(days=4) <= t < T0 + timedelta(days=5)]
    read = fragment.split_by_row_group(filter=day)
    # Only the groups holding the day's rows: the ones its first and last rows are in.
    assert [g.row_groups[0].id for g in read] == list(range(inside[0] // 64, inside[-1] // 64 + 1))
    assert len(read) < 8 / 2
    assert sum(g.to_table(filter=day).num_rows for g in read) == len(inside)
