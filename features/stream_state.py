"""The stream worker's durable state: each streamed user's running sums, and the
ids of the events already applied, in one SQLite file committed once per batch.

A batch's users and its event ids go in one transaction, so after any crash the
state is that of a whole number of batches, and an event read again (the log
delivers at least once) is recognised by its id and skipped.
"""

from __future__ import annotations

import marshal
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from features.streaming import UserState

# A state of another FORMAT is dropped when opened: the worker then starts over on
# its snapshot and replays the logged events (StreamWorker._rebase), as for a new one.
FORMAT = "2"
USERS = """CREATE TABLE users (
    user_id TEXT PRIMARY KEY, raw BLOB NOT NULL, events REAL NOT NULL,
    conversions REAL NOT NULL, recent BLOB NOT NULL, row_ts INTEGER NOT NULL) WITHOUT ROWID"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applied (event_id TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
"""
CHUNK = 500  # ids per IN (...) list
# The dedup window is pruned every this many commits, by a scan: an index on the
# time would cost every applied event a second B-tree insert (a fifth of a batch).
PRUNE_EVERY = 200


class StreamState:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._commits = 0

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self._path, timeout=10.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(SCHEMA)
            self._migrate(self._conn)
        return self._conn

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if row is not None and row[0] == FORMAT:
            return
        db.execute("BEGIN IMMEDIATE")  # DDL too: all of it, or none after a crash
        db.execute("DROP TABLE IF EXISTS users")
        db.execute(USERS)
        db.execute("DELETE FROM applied")
        db.execute("DELETE FROM meta")
        db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
        db.execute("COMMIT")

    def basis_at(self) -> int | None:
        """The snapshot time (micros) the state is built on; None for a new state."""
        row = self._db().execute("SELECT value FROM meta WHERE key = 'basis_at'").fetchone()
        return None if row is None else int(row[0])

    def reset(self, basis_at: int) -> None:
        """Start over on a new snapshot: no users, no applied ids."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM users")
        db.execute("DELETE FROM applied")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('basis_at', ?)", (str(basis_at),))
        db.execute("COMMIT")

    def applied(self, event_ids: Sequence[str]) -> set[str]:
        """Which of the ids are applied already."""
        found: set[str] = set()
        db = self._db()
        for at in range(0, len(event_ids), CHUNK):
            chunk = list(event_ids[at : at + CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = db.execute(f"SELECT event_id FROM applied WHERE event_id IN ({marks})", chunk)
            found.update(r[0] for r in rows)
        return found

    def users(self, user_ids: Sequence[str], width: int) -> dict[str, UserState]:
        """The stored states of those users that have one."""
        states: dict[str, UserState] = {}
        db = self._db()
        for at in range(0, len(user_ids), CHUNK):
            chunk = list(user_ids[at : at + CHUNK])
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT user_id, raw, events, conversions, recent, row_ts "
                f"FROM users WHERE user_id IN ({marks})"
            )
            for user, raw, events, conversions, recent, row_ts in db.execute(query, chunk):
                vector = np.frombuffer(raw, dtype="<f8").copy()
                if vector.size != width:
                    raise ValueError(f"{self._path}: a state of width {vector.size}, not {width}")
                items, times = marshal.loads(recent)
                states[user] = UserState(vector, events, conversions, items, times, row_ts)
        return states

    def commit(
        self, states: dict[str, UserState], event_ids: Iterable[str], prune_before: float
    ) -> None:
        """The batch's users and applied ids, atomically; ids older than prune_before go."""
        now = time.time()
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (
                        user,
                        s.raw.astype("<f8").tobytes(),
                        s.events,
                        s.conversions,
                        # marshal: our own file; json.dumps and loads were a tenth of a batch
                        marshal.dumps((s.recent, s.recent_ts)),
                        s.row_ts,
                    )
                    for user, s in states.items()
                ),
            )
            db.executemany("INSERT INTO applied VALUES (?, ?)", ((e, now) for e in event_ids))
            self._commits += 1
            if self._commits % PRUNE_EVERY == 0:
                db.execute("DELETE FROM applied WHERE at < ?", (prune_before,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
