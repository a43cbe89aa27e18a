"""Item features in memory: contiguous arrays indexed by item, bounded, LRU.

Every request shares the item features, so they live here rather than being
read from the online store per request. The cache is warmed with the whole
catalogue when it fits its capacity; otherwise it holds the hot items, and a
request's misses are read in one batched online read. Items the store does
not know are cached too (as unknown), so a bad id costs one read per
refresh, not one per request. `replace` swaps in a freshly built table when
a materialization lands; readers never see a half-built table.
"""

from __future__ import annotations

import itertools
import operator
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from features.errors import FeatureSchemaMismatch
from features.rows import ItemRows
from features.scoring import row_norms

Reader = Callable[[Sequence[str]], ItemRows]
SCALARS = 5


class ItemTable:
    """Growable slot arrays; slot i holds one item's features."""

    def __init__(self, capacity: int) -> None:
        size = max(1, min(capacity, 1024))
        self.capacity = capacity
        self.dim = 0
        self.index: dict[str, int] = {}
        self.ids: list[str | None] = [None] * size
        self.vectors = np.zeros((size, 0), dtype=np.float32)
        # bias, conversion, price, and the norms of the vector and the embedding,
        # kept so a request's cosines cost one dot product per item, not three.
        self.scalars = np.zeros((size, SCALARS), dtype=np.float32)
        self.timestamp = np.zeros(size, dtype=np.float64)
        self.known = np.zeros(size, dtype=bool)
        self.last_used = np.zeros(size, dtype=np.int64)
        self.used = 0
        # Learned embeddings, when the store serves them: [size, E].
        self.embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, item_ids: Sequence[str]) -> np.ndarray:
        """Slot per id, -1 where absent; the loop runs in C (map over dict.get)."""
        get = self.index.get
        return np.fromiter(
            map(get, item_ids, itertools.repeat(-1)), dtype=np.int64, count=len(item_ids)
        )

    def lookup_all(self, item_ids: Sequence[str]) -> np.ndarray | None:
        """Slot per id when every id is cached, else None: the common case in one
        C call (itemgetter), without a per-id default or a check of the result."""
        if len(item_ids) <= 1:  # itemgetter takes one key at least
            if not item_ids:
                return np.empty(0, dtype=np.int64)
            slot = self.index.get(item_ids[0])
            return None if slot is None else np.array([slot], dtype=np.int64)
        try:
            slots = operator.itemgetter(*item_ids)(self.index)
        except KeyError:
            return None
        return np.fromiter(slots, dtype=np.int64, count=len(item_ids))

    def gather(self, slots: np.ndarray, tick: int) -> ItemRows:
        # take, not fancy indexing: the same rows in half the time for a request's 100.
        self.last_used[slots] = tick
        scalars = self.scalars.take(slots, axis=0)
        embeddings = None if self.embeddings is None else self.embeddings.take(slots, axis=0)
        return ItemRows(
            vectors=self.vectors.take(slots, axis=0),
            bias=scalars[:, 0],
            conversion=scalars[:, 1],
            price=scalars[:, 2],
            known=self.known.take(slots),
            timestamp=self.timestamp.take(slots),
            embeddings=embeddings,
            vector_norms=scalars[:, 3],
            embedding_norms=None if embeddings is None else scalars[:, 4],
        )

    def put(self, ids: Sequence[str], rows: ItemRows, tick: int) -> None:
        vectors = self._fit_dim(rows)
        slots = self._slots_for(len(ids))
        self.vectors[slots] = vectors
        self.scalars[slots, :3] = np.stack([rows.bias, rows.conversion, rows.price], axis=1)
        self.scalars[slots, 3] = row_norms(vectors)
        self.timestamp[slots] = rows.timestamp
        self.known[slots] = rows.known
        self.last_used[slots] = tick
        if rows.embeddings is not None:
            self._put_embeddings(slots, rows.embeddings)
        for slot, item_id in zip(slots.tolist(), ids, strict=True):
            self.ids[slot] = item_id
            self.index[item_id] = slot

    def _put_embeddings(self, slots: np.ndarray, embeddings: np.ndarray) -> None:
        width = embeddings.shape[1]
        if self.embeddings is None or (self.embeddings.shape[1] == 0 and width):
            self.embeddings = np.zeros((len(self.ids), width), dtype=np.float32)
        if width == 0:  # none of these items has an embedding
            self.embeddings[slots] = 0.0
            self.scalars[slots, 4] = 0.0
            return
        if width != self.embeddings.shape[1]:
            raise FeatureSchemaMismatch(
                f"item embeddings now have {width} dimensions, the cache holds "
                f"{self.embeddings.shape[1]}; re-materialize all item embeddings"
            )
        self.embeddings[slots] = embeddings
        self.scalars[slots, 4] = row_norms(embeddings)

    def _fit_dim(self, rows: ItemRows) -> np.ndarray:
        if not rows.known.any():
            return np.zeros((len(rows), self.dim), dtype=np.float32)
        dim = rows.vectors.shape[1]
        if self.dim == 0:  # everything cached so far is unknown: zero rows of any width
            self.dim = dim
            self.vectors = np.zeros((len(self.ids), dim), dtype=np.float32)
        if dim != self.dim:
            raise FeatureSchemaMismatch(
                f"item vectors now have {dim} dimensions, the cache holds {self.dim}; "
                "re-materialize all item features"
            )
        return rows.vectors

    def _grow(self, needed: int) -> None:
        extra = min(self.capacity, max(needed, 2 * len(self.ids))) - len(self.ids)
        if extra <= 0:
            return
        self.ids.extend([None] * extra)
        self.vectors = np.concatenate([self.vectors, np.zeros((extra, self.dim), np.float32)])
        self.scalars = np.concatenate([self.scalars, np.zeros((extra, SCALARS), np.float32)])
        self.timestamp = np.concatenate([self.timestamp, np.zeros(extra)])
        self.known = np.concatenate([self.known, np.zeros(extra, bool)])
        self.last_used = np.concatenate([self.last_used, np.zeros(extra, np.int64)])
        if self.embeddings is not None:
            width = self.embeddings.shape[1]
            self.embeddings = np.concatenate(
                [self.embeddings, np.zeros((extra, width), np.float32)]
            )

    def _slots_for(self, count: int) -> np.ndarray:
        """`count` slots to write: free ones first, then the least recently used."""
        if self.used + count > len(self.ids):
            self._grow(self.used + count)
        free = min(count, len(self.ids) - self.used)
        slots = np.arange(self.used, self.used + free)
        self.used += free
        evict = count - free
        if evict:
            victims = np.argpartition(self.last_used[: self.used], evict - 1)[:evict]
            for slot in victims.tolist():
                self.index.pop(self.ids[slot] or "", None)
            slots = np.concatenate([slots, victims])
        return slots


class ItemFeatureCache:
    def __init__(self, reader: Reader, capacity: int, batch: int = 5000) -> None:
        if capacity < 1:
            raise ValueError("item cache capacity must be at least 1")
        self._reader = reader
        self.capacity = capacity
        self._batch = batch
        self._lock = threading.Lock()
        self._table = ItemTable(capacity)
        self._ticks = itertools.count(1)
        self.loaded_at = 0.0
        self.requested = 0  # item ids asked for through rows(); hits = requested - misses
        self.misses = 0

    def build(self, item_ids: Sequence[str]) -> ItemTable:
        """Read up to `capacity` items into a new table, in batches, off the request path."""
        wanted = list(dict.fromkeys(item_ids))[: self.capacity]
        table = ItemTable(self.capacity)
        for start in range(0, len(wanted), self._batch):
            chunk = wanted[start : start + self._batch]
            table.put(chunk, self._reader(chunk), tick=0)
        return table

    def replace(self, table: ItemTable) -> None:
        with self._lock:
            self._table = table
            self.loaded_at = time.time()

    def table(self) -> ItemTable:
        """The current table: replaced whole, never changed in place by a refresh."""
        with self._lock:
            return self._table

    def warm(self, item_ids: Sequence[str]) -> None:
        self.replace(self.build(item_ids))

    def cached_ids(self) -> list[str]:
        with self._lock:
            return list(self._table.index)

    def age_seconds(self) -> float:
        """Seconds since the cached table was read from the store; -1 before."""
        return time.time() - self.loaded_at if self.loaded_at else -1.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._table)

    def cached_rows(self, item_ids: Sequence[str]) -> ItemRows:
        """As rows(), from the cache alone, while the store cannot be read: an id it does
        not hold comes back unknown, and is not cached (the next read may know it)."""
        with self._lock:
            self.requested += len(item_ids)
            slots = self._table.lookup(item_ids)
            absent = slots < 0
            found = self._table.gather(np.where(absent, 0, slots), next(self._ticks))
        if not absent.any():
            return found
        self.misses += int(np.count_nonzero(absent))
        return _unknown_where(found, absent)

    def rows(self, item_ids: Sequence[str]) -> ItemRows:
        """Features of the given items, a row per id; misses read in one batched read."""
        if len(item_ids) > self.capacity:  # cannot hold them all at once: bypass
            return self._reader(item_ids)
        with self._lock:
            self.requested += len(item_ids)
            found = self._table.lookup_all(item_ids)
            if found is not None:
                return self._table.gather(found, next(self._ticks))
            slots = self._table.lookup(item_ids)
        # Distinct: a batch of requests may name an item more than once.
        missing = list(dict.fromkeys(item_ids[i] for i in np.flatnonzero(slots < 0).tolist()))
        fresh = self._reader(missing)
        with self._lock:
            self.misses += len(missing)
            if not self.loaded_at:
                self.loaded_at = time.time()
            table, tick = self._table, next(self._ticks)
            slots = table.lookup(item_ids)
            table.last_used[slots[slots >= 0]] = tick  # hits must not be evicted by the misses
            still = [i for i, item in enumerate(missing) if item not in table.index]
            if still:
                table.put([missing[i] for i in still], fresh.take(np.asarray(still)), tick)
                slots = table.lookup(item_ids)
            return table.gather(slots, tick)


def _unknown_where(rows: ItemRows, absent: np.ndarray) -> ItemRows:
    """The rows, with those marked absent made unknown: zeros, known False (gather's
    arrays are its own copies, so they are changed in place)."""
    arrays = [rows.vectors, rows.bias, rows.conversion, rows.price, rows.timestamp]
    optional = (rows.embeddings, rows.vector_norms, rows.embedding_norms)
    arrays += [array for array in optional if array is not None]
    for array in arrays:
        array[absent] = 0
    rows.known[absent] = False
    return rows
