"""Queries to text vectors, with a bounded cache: a repeated query is a dict hit.

The language model (features/text_encoder.py) costs milliseconds a query; search
traffic repeats its head queries, so the last `capacity` distinct queries are
kept, least recently used out first, keyed by features.text.query_key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from features.text import query_key
from features.text_encoder import TextEncoder


class QueryEncoder:
    def __init__(self, encoder: TextEncoder, capacity: int) -> None:
        self._encoder = encoder
        self.capacity = capacity
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def encode(self, text: str) -> np.ndarray:
        """float32 [dim], unit length, read-only (shared by every request that asks)."""
        key = query_key(text)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        # Outside the lock: other requests' hits need not wait for the model.
        vector: np.ndarray = self._encoder.encode([key])[0]
        vector.flags.writeable = False
        if self.capacity:
            with self._lock:
                self._cache[key] = vector
                self._cache.move_to_end(key)
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
        return vector

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)
