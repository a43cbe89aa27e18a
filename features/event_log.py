"""The durable event log between the event API and the stream worker.

Two of them, one contract (EventLog):
- SqliteEventLog, the embedded default: a SQLite file in the workspace, in WAL
  mode with synchronous=FULL, so an accepted event is on disk before the call
  returns. `make run` needs no service for it; every server process and the
  worker open the same file.
- RedisStreamLog, production: a Redis Stream read through a consumer group.
  An append is one Lua script, atomic: it checks the bound, then per event sets
  its id's dedup key (SET NX EX) and XADDs only the new ones. Every key carries
  one hash tag, so the script runs on a Redis Cluster too. An event is as
  durable as the Redis it is in is configured to be (appendonly, fsync).

Both dedup event ids over a window (dedup_seconds): a retried call within it
writes nothing twice. Both keep only what the worker has not acknowledged, so
their length is the backlog; append refuses a batch once the backlog reaches
its bound (EventLogFull), and the API answers RESOURCE_EXHAUSTED.

Delivery is at least once: what was read and not acknowledged is read again
after a restart, first, in order. The worker applies each event once by its id.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

LOG_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("query", pa.string()),
    ]
)
LOG_KINDS = ("local", "redis")
DEDUP_SECONDS = 24 * 3600
POLL_SECONDS = 0.005  # how often a blocked SQLite read looks again


class EventLogFull(Exception):
    """The log holds max_backlog events the worker has not applied yet."""


def _full(bound: int) -> EventLogFull:
    return EventLogFull(
        f"the event log holds {bound} events the stream worker has not applied (its bound); "
        "nothing was written: retry with backoff, and check `shoprank features stream` runs"
    )


class EventLogUnavailable(Exception):
    """The log could not be written or read; nothing of the call was written."""


@dataclass(frozen=True)
class Delivery:
    """Events read from the log, in log order, with each one's position."""

    positions: list[str]
    events: pa.Table  # LOG_SCHEMA

    @property
    def first(self) -> str:
        return self.positions[0]

    @property
    def last(self) -> str:
        return self.positions[-1]


class EventLog(Protocol):
    def append(self, events: pa.Table, max_backlog: int) -> list[bool]:
        """Write the events whose ids are new, durably; per event, whether it was new.
        Raises EventLogFull (nothing written) when the backlog is at max_backlog."""
        ...

    def read(self, count: int, block_seconds: float) -> Delivery | None:
        """Up to count events after the last acknowledged, waiting up to block_seconds;
        after a restart, what was delivered but not acknowledged comes first."""
        ...

    def ack(self, delivery: Delivery) -> None:
        """The delivery is applied: it is never read again."""
        ...

    def redeliver(self) -> None:
        """Forget what was read and not acknowledged: the next read starts after the
        last acknowledgement again (after a failed batch)."""
        ...

    def backlog(self) -> int: ...

    def first_pending(self) -> str | None:
        """The position of the oldest event not acknowledged; None when there is none."""
        ...

    def close(self) -> None: ...


def _rows(events: pa.Table) -> list[tuple[Any, ...]]:
    """(event_id, user_id, item_id, event_type, ts in micros, query) per event."""
    micros = pc.cast(events["ts"], pa.int64()).to_pylist()
    columns = [events[name].to_pylist() for name in ("event_id", "user_id", "item_id")]
    kinds, queries = events["event_type"].to_pylist(), events["query"].to_pylist()
    return list(zip(*columns, kinds, micros, queries, strict=True))


def _table(rows: list[tuple[Any, ...]]) -> pa.Table:
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in LOG_SCHEMA]
    arrays = [
        pa.array(list(values), pa.int64()).cast(LOG_SCHEMA.field(k).type)
        if LOG_SCHEMA.field(k).name == "ts"
        else pa.array(list(values), LOG_SCHEMA.field(k).type)
        for k, values in enumerate(columns)
    ]
    return pa.Table.from_arrays(arrays, schema=LOG_SCHEMA)


class SqliteEventLog:
    """The embedded default: one SQLite file, shared by the servers and the worker."""

    def __init__(self, path: Path, dedup_seconds: float = DEDUP_SECONDS) -> None:
        self._path = path
        self._dedup_seconds = dedup_seconds
        self._local = threading.local()
        self._delivered = 0  # this reader's position: the last seq handed out
        self._appends = 0

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=10.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # accepted = on disk
            conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL,
                    user_id TEXT NOT NULL, item_id TEXT NOT NULL, event_type TEXT NOT NULL,
                    ts INTEGER NOT NULL, query TEXT);
                CREATE TABLE IF NOT EXISTS seen (
                    event_id TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
                CREATE INDEX IF NOT EXISTS seen_at ON seen (at);
                CREATE TABLE IF NOT EXISTS acked (
                    one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL);
                """
            )
            self._local.conn = conn
        return conn

    def append(self, events: pa.Table, max_backlog: int) -> list[bool]:
        ids: list[str] = events["event_id"].to_pylist()
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._backlog(conn) >= max_backlog:
                    raise _full(max_backlog)
                known = self._seen(conn, ids)
                new: list[bool] = []
                for event_id in ids:
                    new.append(event_id not in known)
                    known.add(event_id)
                now = time.time()
                rows = [row for keep, row in zip(new, _rows(events), strict=True) if keep]
                conn.executemany("INSERT INTO seen VALUES (?, ?)", ((r[0], now) for r in rows))
                conn.executemany(
                    "INSERT INTO events (event_id, user_id, item_id, event_type, ts, query) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._appends += 1
                if self._appends % 100 == 0:  # the dedup window, pruned now and then
                    conn.execute("DELETE FROM seen WHERE at < ?", (now - self._dedup_seconds,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise EventLogUnavailable(f"event log {self._path}: {error}") from error
        return new

    @staticmethod
    def _seen(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for at in range(0, len(ids), 500):
            chunk = ids[at : at + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT event_id FROM seen WHERE event_id IN ({marks})"
            found.update(row[0] for row in conn.execute(query, chunk))
        return found

    @staticmethod
    def _backlog(conn: sqlite3.Connection) -> int:
        low, high = conn.execute("SELECT min(seq), max(seq) FROM events").fetchone()
        return 0 if low is None else int(high - low + 1)

    def backlog(self) -> int:
        return self._backlog(self._conn())

    def first_pending(self) -> str | None:
        low = self._conn().execute("SELECT min(seq) FROM events").fetchone()[0]
        return None if low is None else f"{low:020d}"

    def read(self, count: int, block_seconds: float) -> Delivery | None:
        conn = self._conn()
        if not self._delivered:
            row = conn.execute("SELECT seq FROM acked").fetchone()
            self._delivered = int(row[0]) if row else 0
        deadline = time.monotonic() + block_seconds
        while True:
            rows = conn.execute(
                "SELECT seq, event_id, user_id, item_id, event_type, ts, query FROM events "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (self._delivered, count),
            ).fetchall()
            if rows:
                self._delivered = int(rows[-1][0])
                return Delivery([f"{r[0]:020d}" for r in rows], _table([r[1:] for r in rows]))
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_SECONDS)

    def redeliver(self) -> None:
        self._delivered = 0

    def ack(self, delivery: Delivery) -> None:
        conn = self._conn()
        last = int(delivery.last)
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO acked VALUES (1, ?)", (last,))
            conn.execute("DELETE FROM events WHERE seq <= ?", (last,))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# KEYS[1]: the stream; KEYS[2..]: each event's dedup key. ARGV[1]: the bound;
# ARGV[2]: the dedup window, seconds; then six fields per event.
_APPEND = """
local n = #KEYS - 1
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return -1 end
local out = {}
for i = 1, n do
  if redis.call('SET', KEYS[i + 1], '1', 'NX', 'EX', ARGV[2]) then
    local b = 2 + (i - 1) * 6
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[b + 1], 'u', ARGV[b + 2], 'i', ARGV[b + 3],
               't', ARGV[b + 4], 's', ARGV[b + 5], 'q', ARGV[b + 6])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
NO_QUERY = "\x00"  # a Redis field holds bytes, never nothing: the stand-in for null


class RedisStreamLog:
    """A Redis Stream with one consumer group; entries are deleted once acknowledged."""

    def __init__(
        self,
        connect: Callable[[], Any],  # a redis-py client, made at first use: no I/O here
        stream: str = "{shoprank:events}",
        group: str = "shoprank-stream",
        consumer: str = "worker",
        dedup_seconds: float = DEDUP_SECONDS,
    ) -> None:
        self._connect = connect
        self._made: Any = None
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._dedup = int(dedup_seconds)
        self._script: Any = None
        self._pending = True  # after a start, re-read what this consumer was handed

    @property
    def _client(self) -> Any:
        if self._made is None:
            self._made = self._connect()
        return self._made

    def _down(self, error: BaseException) -> EventLogUnavailable:
        return EventLogUnavailable(f"event log (Redis stream {self._stream}): {error}")

    def _errors(self) -> tuple[type[BaseException], ...]:
        import redis

        return (redis.RedisError, OSError)

    def append(self, events: pa.Table, max_backlog: int) -> list[bool]:
        ids: list[str] = events["event_id"].to_pylist()
        keys = [self._stream, *(f"{self._stream}:seen:{e}" for e in ids)]
        argv: list[Any] = [max_backlog, self._dedup]
        for row in _rows(events):
            argv.extend(row[:5])
            argv.append(NO_QUERY if row[5] is None else row[5])
        try:
            if self._script is None:
                self._script = self._client.register_script(_APPEND)
            result = self._script(keys=keys, args=argv)
        except self._errors() as error:
            raise self._down(error) from error
        if result == -1:
            raise _full(max_backlog)
        return [bool(flag) for flag in result]

    def backlog(self) -> int:
        try:
            return int(self._client.xlen(self._stream))
        except self._errors() as error:
            raise self._down(error) from error

    def first_pending(self) -> str | None:
        try:  # acknowledged entries are deleted: the first one left is the oldest pending
            entries = self._client.xrange(self._stream, "-", "+", count=1)
        except self._errors() as error:
            raise self._down(error) from error
        return _position(entries[0][0]) if entries else None

    def _ensure_group(self) -> None:
        import redis

        try:
            self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def read(self, count: int, block_seconds: float) -> Delivery | None:
        try:
            if self._pending:
                self._ensure_group()
                entries = self._read("0", count, None)
                if entries:
                    return self._delivery(entries)
                self._pending = False
            entries = self._read(">", count, max(1, int(block_seconds * 1000)))
        except self._errors() as error:
            raise self._down(error) from error
        return self._delivery(entries) if entries else None

    def _read(self, start: str, count: int, block_ms: int | None) -> list[Any]:
        reply = self._client.xreadgroup(
            self._group, self._consumer, {self._stream: start}, count=count, block=block_ms
        )
        if not reply:
            return []
        entries: list[Any] = reply[0][1]
        return [e for e in entries if e[1]]  # a deleted entry comes back with no fields

    @staticmethod
    def _delivery(entries: list[Any]) -> Delivery | None:
        if not entries:
            return None
        positions = []
        rows = []
        for entry_id, fields in entries:
            positions.append(_position(entry_id))
            f = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
            q = f["q"].decode() if isinstance(f["q"], bytes) else f["q"]

            def text_of(v: Any) -> str:
                return v.decode() if isinstance(v, bytes) else str(v)

            rows.append(
                (
                    text_of(f["e"]),
                    text_of(f["u"]),
                    text_of(f["i"]),
                    text_of(f["t"]),
                    int(f["s"]),
                    None if q == NO_QUERY else q,
                )
            )
        return Delivery(positions, _table(rows))

    def redeliver(self) -> None:
        self._pending = True

    def ack(self, delivery: Delivery) -> None:
        ids = [_stream_id(p) for p in delivery.positions]
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.xack(self._stream, self._group, *ids)
            pipe.xdel(self._stream, *ids)
            pipe.execute()
        except self._errors() as error:
            raise self._down(error) from error

    def close(self) -> None:
        if self._made is not None:
            self._made.close()


def _position(entry_id: bytes | str) -> str:
    """A stream entry id as a position: fixed width, so positions sort as the log does."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, n = text.partition("-")
    return f"{int(ms):015d}-{int(n):06d}"


def _stream_id(position: str) -> str:
    ms, _, n = position.partition("-")
    return f"{int(ms)}-{int(n)}"


def open_event_log(workspace: Any, dedup_seconds: float = DEDUP_SECONDS) -> EventLog:
    """The workspace's event log, as its stores name it (features.workspace.Stores)."""
    from features.online_layout import redis_client

    stores = workspace.stores
    kind = stores.event_log_kind
    if kind == "local":
        return SqliteEventLog(workspace.stream_dir / "events.sqlite", dedup_seconds)
    if kind == "redis":
        redis_type = "redis_cluster" if stores.online_store == "redis_cluster" else "redis"
        return RedisStreamLog(
            lambda: redis_client(redis_type, stores.redis), dedup_seconds=dedup_seconds
        )
    raise ValueError(f"event log {kind!r} is not one of {', '.join(LOG_KINDS)}")
