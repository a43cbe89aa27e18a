"""`shoprank features stream` killed with SIGKILL while it works, and restarted:
no event lost, none counted twice."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features import names, store
from features.event_log import LOG_SCHEMA, open_event_log
from features.workspace import Stores, Workspace
from tests.support import copy_workspace

EVENTS = 3000


def many_events(workspace: Workspace, count: int) -> pa.Table:
    """Held-out events, repeated under new ids until there are `count`."""
    heldout = pq.read_table(workspace.heldout_path)
    rows = heldout.take(pa.array(np.arange(count) % heldout.num_rows))
    ids = pa.array([f"kill-{k}" for k in range(count)])
    return rows.append_column("event_id", ids).select(LOG_SCHEMA.names).cast(LOG_SCHEMA)


def start_worker(home: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "server.cli", "features", "stream", "--home", str(home)]
    return subprocess.Popen(
        [*command, "--batch-events", "150"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def applied(home: Path) -> int:
    path = home / "stream" / "worker.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=10) as db:
        try:
            return int(db.execute("SELECT count(*) FROM applied").fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(
    workspace: Workspace, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    workspace = copy_workspace(workspace, home, Stores())
    store.apply(workspace)
    store.materialize(workspace)
    events = many_events(workspace, EVENTS)
    log = open_event_log(workspace)
    for start in range(0, EVENTS, 500):
        log.append(events.slice(start, 500), 100_000)
    kills = []
    for stop_at in (500, 1200, 2000):  # killed three times while busy
        worker = start_worker(home)
        busy = worker

        def progressed(busy: subprocess.Popen[str] = busy, at: int = stop_at) -> bool:
            return applied(home) >= at or busy.poll() is not None

        wait_for(progressed, 120, "progress")
        assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        kills.append(applied(home))
    worker = start_worker(home)
    wait_for(lambda: log.backlog() == 0, 120, "the backlog to drain")
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "stream: stopped after" in out
    assert kills == sorted(kills) and kills[-1] < EVENTS
    # Every event applied once: the state holds each id once ...
    assert applied(home) == EVENTS
    # ... the offline files hold each event once ...
    kept = pq.read_table(workspace.logged_events_dir)
    assert kept.num_rows == EVENTS
    assert sorted(kept["ts"].to_pylist()) == sorted(events["ts"].to_pylist())
    # ... and each user's event count is the snapshot's plus their events, exactly.
    from features.stream_worker import load_snapshot

    snap = load_snapshot(workspace)
    users = sorted(set(events["user_id"].to_pylist()))
    mine = dict(zip(*np.unique(events["user_id"].to_numpy(), return_counts=True), strict=True))
    before = {
        u: snap.aggregates.user_events[snap.user_index[u]] if u in snap.user_index else 0
        for u in users
    }
    served = (
        store.open_store(workspace)
        .get_online_features([f"{names.USER_VIEW}:user_activity"], [{"user_id": u} for u in users])
        .to_dict()["user_activity"]
    )
    expected = [np.float32(np.log1p(before[u] + mine[u])) for u in users]
    np.testing.assert_array_equal(np.array(served, dtype=np.float32), expected)
