"""Fakes of the ports, for unit tests of pure logic: no Feast, no store, no ONNX."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from features.rows import ItemRows, UserRow

COLD = UserRow(np.zeros(0, np.float32), 0.0, 0.0, False, 0.0)


def user(
    vector: Sequence[float], bias: float = 1.0, embedding: Sequence[float] | None = None
) -> UserRow:
    return UserRow(
        vector=np.asarray(vector, np.float32),
        bias=bias,
        activity=0.5,
        known=True,
        timestamp=1000.0,
        embedding=None if embedding is None else np.asarray(embedding, np.float32),
    )


class FakeItems:
    """A FeatureSource over a dict of items: (vector, bias) and an optional embedding.

    It keeps the port's contract: rows in the order asked, unknown ids as zero
    rows marked unknown; reads counts the calls, one per items() call."""

    def __init__(
        self,
        items: Mapping[str, tuple[Sequence[float], float]],
        embeddings: Mapping[str, Sequence[float]] | None = None,
        users: Mapping[str, UserRow] | None = None,
    ) -> None:
        self._items = items
        self._embeddings = embeddings
        self._users = users or {}
        self.dim = len(next(iter(items.values()))[0])
        self.reads = 0

    async def user(self, user_id: str) -> UserRow:
        return self._users.get(user_id, COLD)

    def items(self, item_ids: Sequence[str]) -> ItemRows:
        self.reads += 1
        n = len(item_ids)
        known = np.array([i in self._items for i in item_ids], dtype=bool)
        vectors = np.zeros((n, self.dim), np.float32)
        bias = np.zeros(n, np.float32)
        for row, item in enumerate(item_ids):
            if item in self._items:
                vectors[row], bias[row] = self._items[item]
        embeddings = None
        if self._embeddings is not None:
            width = len(next(iter(self._embeddings.values())))
            embeddings = np.zeros((n, width), np.float32)
            for row, item in enumerate(item_ids):
                if item in self._embeddings:
                    embeddings[row] = self._embeddings[item]
        return ItemRows(
            vectors=vectors,
            bias=bias,
            conversion=np.where(known, np.float32(0.25), np.float32(0.0)),
            price=np.where(known, np.float32(0.75), np.float32(0.0)),
            known=known,
            timestamp=np.where(known, 900.0, 0.0),
            embeddings=embeddings,
        )


class FakeScorer:
    """A model whose score is a fixed weighting of its input columns, recorded."""

    def __init__(self, weights: Sequence[float]) -> None:
        self._weights = np.asarray(weights, np.float32)
        self.inputs: list[np.ndarray] = []

    def score(self, features: np.ndarray) -> np.ndarray:
        self.inputs.append(features)
        return (features[:, : self._weights.size] @ self._weights).astype(np.float32)


def report_with(
    p50: float, p99: float, rps: float, count: int = 1000, errors: int = 0
) -> dict[str, object]:
    """The parts of a `loadtest --json` report that `compare` reads."""
    from server.clients.loadtest.report import FORMAT

    return {
        "format": FORMAT,
        "load": {"mode": "closed", "concurrency": 8, "rps": 0.0, "workers": 1},
        "scenario": {},
        "latency_ms": {"p50": p50, "p99": p99},
        "rps": rps,
        "count": count,
        "errors": errors,
    }
