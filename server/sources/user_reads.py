"""Users' features from every user view in one read of Feast's online store.

A ranking needs its user's row of each user view (features, and learned
embeddings for an embeddings model). Feast reads one view per call, and its
Python around the read costs more than the read itself: 150-350 us a call here,
twice per request. This reads all views of a user (or of a batch of users) in
one round trip, one SQL statement on SQLite and one HMGET (or a pipeline of
them) on Redis, from the layout Feast's own online stores write; the entity key
is Feast's own encoding. Tests hold the result equal to get_online_features
value for value on SQLite, Redis and Redis Cluster, so a Feast upgrade that
changes the layout fails them rather than serving zeros.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from features.online_layout import EntityKeys, feature_field, parse_connection_string, redis_client
from features.store import sqlite_online_path
from server.errors import FeatureStoreUnavailable
from server.sources.resp import RespClient

if TYPE_CHECKING:
    from feast import FeatureStore


@dataclass(frozen=True)
class UserView:
    name: str  # the feature view, as Feast names its table / hash fields
    features: tuple[str, ...]


# feature name -> serialised ValueProto, and the row's event time (epoch seconds),
# per view; None for a view that has no row for the user.
ViewRow = tuple[dict[str, bytes], float] | None


class UserReads(Protocol):
    def read(self, user_ids: Sequence[str]) -> list[list[ViewRow]]:
        """Per user, one row per view in the views' order."""
        ...

    async def read_async(self, user_id: str) -> list[ViewRow]:
        """One user's rows, without blocking the event loop on a network store."""
        ...


MMAP_BYTES = 1 << 30


class SqliteUserReads:
    """All user views of a batch of users in one SELECT over Feast's per-view tables."""

    def __init__(
        self,
        path: Path,
        project: str,
        views: Sequence[UserView],
        keys: EntityKeys,
        timeout: float = 5.0,
    ) -> None:
        self._path = path
        self._timeout = timeout  # how long a read waits on a writer's lock
        self._views = list(views)
        self._keys = keys
        self._local = threading.local()  # a connection per thread: sqlite3's rule
        # Feast's table per view is "<project>_<view>" (without view versioning).
        self._tables = [f"{project}_{view.name}".replace('"', '""') for view in self._views]
        # One user, what the server reads per request: the key is known, not selected.
        self._one = self._union("feature_name, value, event_ts", "entity_key = ?1")

    def _union(self, columns: str, condition: str) -> str:
        """One SELECT per view table, its rows tagged with the view's index."""
        return " UNION ALL ".join(
            f'SELECT {view}, {columns} FROM "{table}" WHERE {condition}'
            for view, table in enumerate(self._tables)
        )

    def _sql(self, count: int) -> str:
        # The same text per batch size, so sqlite3's statement cache keeps it prepared.
        keys = ",".join(f"?{i + 1}" for i in range(count))
        return self._union("entity_key, feature_name, value, event_ts", f"entity_key IN ({keys})")

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Read-only: a reader must never create or lock the store for writing.
            uri = f"{self._path.resolve().as_uri()}?mode=ro"  # as_uri quotes ?, # and spaces
            conn = sqlite3.connect(uri, uri=True, timeout=self._timeout)
            # Pages read through a memory map: no pread per read transaction, which
            # halved a user read here (31 -> 16 us). Address space, not memory: the
            # OS pages in what is read, shared with its page cache.
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            self._local.conn = conn
        return conn

    def _fetch(self, sql: str, keys: list[bytes]) -> list[Any]:
        try:
            return self._connection().execute(sql, keys).fetchall()
        except sqlite3.Error as error:
            raise FeatureStoreUnavailable(
                f"feature store read failed (sqlite: {error}); check {self._path} is readable"
            ) from None

    def read(self, user_ids: Sequence[str]) -> list[list[ViewRow]]:
        user_keys = list(map(self._keys.key, user_ids))
        keys = list(dict.fromkeys(user_keys))  # a repeated user is read once
        found = self._fetch(self._sql(len(keys)), keys)
        by_key: dict[bytes, list[ViewRow]] = {}
        for view, key, feature, value, event_ts in found:
            rows = by_key.get(key)
            if rows is None:
                rows = by_key[key] = [None] * len(self._views)
            _put(rows, view, feature, value, event_ts)
        missing: list[ViewRow] = [None] * len(self._views)
        return [by_key.get(key, missing) for key in user_keys]

    async def read_async(self, user_id: str) -> list[ViewRow]:
        # A local file mapped into memory: one read takes about 16 us here, less
        # than a hop to a thread would.
        return self.read_one(user_id)

    def read_one(self, user_id: str) -> list[ViewRow]:
        """As read([user_id])[0], without the batch's key bookkeeping."""
        found = self._fetch(self._one, [self._keys.key(user_id)])
        rows: list[ViewRow] = [None] * len(self._views)
        for view, feature, value, event_ts in found:
            _put(rows, view, feature, value, event_ts)
        return rows


def _put(rows: list[ViewRow], view: int, feature: str, value: bytes, event_ts: int) -> None:
    """One stored feature into its view's row, made at the view's first feature."""
    row = rows[view]
    if row is None:
        row = rows[view] = ({}, _sqlite_epoch(event_ts))
    row[0][feature] = value


@functools.lru_cache(maxsize=4096)  # rows of one materialization share their times
def _sqlite_epoch(stored: int) -> float:
    """Feast stores a naive UTC time as datetime.timestamp() does, as if local time,
    and reads it back the same way: undo exactly that, so any TZ reads the true time."""
    return datetime.fromtimestamp(stored).replace(tzinfo=UTC).timestamp()


class RedisUserReads:
    """All user views of a user in one HMGET of the entity's Redis hash, where Feast keeps
    every view of an entity (fields murmur3("view:feature") and "_ts:view"); a batch of
    users in one pipeline, one round trip."""

    def __init__(
        self,
        client: Any,
        async_client: Callable[[], Any],
        project: str,
        views: Sequence[UserView],
        keys: EntityKeys,
    ) -> None:
        self._client = client
        self._make_async_client = async_client
        # An asyncio client belongs to one event loop: made on first use in each.
        self._async_client: Any = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._project = project.encode()
        self._views = list(views)
        self._keys = keys
        self._fields: list[bytes] = []  # bytes, as sent: nothing to encode per call
        for view in self._views:
            self._fields += [feature_field(view.name, feature) for feature in view.features]
            self._fields.append(f"_ts:{view.name}".encode())

    def read(self, user_ids: Sequence[str]) -> list[list[ViewRow]]:
        try:
            if len(user_ids) == 1:  # a pipeline costs more than the command it carries
                replies = [self._client.hmget(self._key(user_ids[0]), self._fields)]
            else:
                with self._client.pipeline(transaction=False) as pipe:
                    for user_id in user_ids:
                        pipe.hmget(self._key(user_id), self._fields)
                    replies = pipe.execute()
        except Exception as error:
            raise FeatureStoreUnavailable.after(error, "redis") from None
        return [self._rows(values) for values in replies]

    async def read_async(self, user_id: str) -> list[ViewRow]:
        loop = asyncio.get_running_loop()
        if self._async_loop is not loop:
            self._async_client, self._async_loop = self._make_async_client(), loop
        try:
            values = await self._async_client.hmget(self._key(user_id), self._fields)
        except Exception as error:
            raise FeatureStoreUnavailable.after(error, "redis") from None
        return self._rows(values)

    def _key(self, user_id: str) -> bytes:
        return self._keys.key(user_id) + self._project

    def _rows(self, values: Sequence[bytes | None]) -> list[ViewRow]:
        from google.protobuf.timestamp_pb2 import Timestamp

        rows: list[ViewRow] = []
        at = 0
        for view in self._views:
            found = values[at : at + len(view.features)]
            stamp = values[at + len(view.features)]
            at += len(view.features) + 1
            if not stamp:
                rows.append(None)
                continue
            ts = Timestamp.FromString(stamp)
            row = {f: v for f, v in zip(view.features, found, strict=True) if v}
            rows.append((row, ts.seconds + ts.nanos / 1e9) if row else None)
        return rows


# What server.resp's client understands of a connection string; anything else
# (TLS, a cluster, other socket options) is left to redis-py.
LEAN_OPTIONS = {"db", "password", "username", "socket_timeout", "socket_connect_timeout"}


def async_redis_client(
    redis_type: str, connection_string: str, timeout: float | None = None
) -> Any:
    """The client a ranking's user read awaits: server.resp's, where it understands the
    store (one node, plain TCP), else redis-py's asyncio client. `timeout` bounds its
    connects and reads, over what the connection string says."""
    if timeout is not None:
        connection_string += f",socket_timeout={timeout},socket_connect_timeout={timeout}"
    nodes, params = parse_connection_string(connection_string)
    if params.get("ssl") is False:
        del params["ssl"]
    if redis_type != "redis" or set(params) - LEAN_OPTIONS:
        return redis_client(redis_type, connection_string, asynchronous=True)
    host, port = nodes[0]
    password = params.get("password")
    username = params.get("username")
    return RespClient(
        host,
        port,
        db=int(params.get("db", 0)),
        password=None if password is None else str(password),
        username=None if username is None else str(username),
        timeout=float(params["socket_timeout"]),
        connect_timeout=float(params["socket_connect_timeout"]),
    )


def user_reads(
    store: FeatureStore, views: Sequence[UserView], timeout: float | None = None
) -> UserReads | None:
    """The one-read path for the store's online store; None where there is none
    (another online store type), and the caller reads view by view through Feast.
    `timeout` bounds an awaited read (read_async): a lock wait on SQLite, a connect or
    reply on Redis; None keeps the stores' own defaults."""
    config = store.config
    if config.registry.enable_online_feature_view_versioning:
        return None  # versioned table and field names: leave them to Feast
    keys = EntityKeys("user_id", config.entity_key_serialization_version)
    online = config.online_store
    path = sqlite_online_path(config)
    if path is not None:
        if timeout is None:
            return SqliteUserReads(path, config.project, views, keys)
        return SqliteUserReads(path, config.project, views, keys, timeout)
    if online.type == "redis" and online.redis_type in ("redis", "redis_cluster"):
        kind, text = online.redis_type, online.connection_string
        client = redis_client(kind, text)
        return RedisUserReads(
            client, lambda: async_redis_client(kind, text, timeout), config.project, views, keys
        )
    return None
