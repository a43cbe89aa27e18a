"""What a ranking carries from stage to stage, and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.rows import UserRow

# The one column a request brings: the candidates' ids (Batch.ids).
ITEM_ID = "item_id"


@dataclass(frozen=True)
class RankQuery:
    user_id: str
    candidates: list[str]  # distinct, in request order
    top_k: int  # 0 = all
    explain: bool


class Batch:
    """One request's candidates as named columns, row i of each for ids[i], and its user.

    A stage reads the columns it needs with batch[name] and writes those it
    gives with batch[name] = array. take() keeps some rows in a new order; it is
    lazy, so a column is reordered only when a later stage reads it: a top-k of
    1000 candidates copies only the columns the ranking then uses.
    """

    __slots__ = ("_columns", "ids", "query", "user")

    def __init__(self, query: RankQuery, user: UserRow) -> None:
        self.query = query
        self.user = user
        self.ids = query.candidates
        # name -> (values, rows still to take from them, or None)
        self._columns: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, name: str) -> bool:
        return name in self._columns

    def __getitem__(self, name: str) -> np.ndarray:
        values, pending = self._columns[name]
        if pending is not None:
            values = values.take(pending, axis=0)
            self._columns[name] = (values, None)
        return values

    def get(self, name: str, default: np.ndarray) -> np.ndarray:
        return self[name] if name in self._columns else default

    def __setitem__(self, name: str, values: np.ndarray) -> None:
        self._columns[name] = (values, None)

    def take(self, rows: np.ndarray) -> None:
        """Keep these rows, in this order, of the ids and of every column."""
        self.ids = list(map(self.ids.__getitem__, rows.tolist()))
        for name, (values, pending) in self._columns.items():
            self._columns[name] = (values, rows if pending is None else pending[rows])

    def known_count(self) -> int:
        # count_nonzero: a third of the cost of .all() and .any() through numpy's reductions.
        return int(np.count_nonzero(self["known"]))


@dataclass(frozen=True)
class Parts:
    """Each ranked item's score parts, best first, for a query that asked to explain."""

    similarity: np.ndarray
    bias: np.ndarray
    model_score: np.ndarray
    heuristic: np.ndarray
    embedding_score: np.ndarray
    item_age: np.ndarray  # seconds; -1 for unknown items
    unknown_item: np.ndarray  # bool


@dataclass(frozen=True)
class Ranking:
    """The top-k, best first."""

    item_ids: list[str]
    scores: np.ndarray
    cold_start: bool
    user_age: float  # seconds; -1 for an unknown user
    model_version: str
    timings: dict[str, float]  # seconds per stage, by the stage's name
    parts: Parts | None  # only when the query asked to explain
