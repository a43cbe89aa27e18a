"""What a ranking carries from stage to stage, and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from features.rows import UserRow

if TYPE_CHECKING:
    from server.ranking.catalogue import CatalogueView

# The one column a request brings: the candidates' ids (Batch.ids).
ITEM_ID = "item_id"

# How a ranking's user features were served (server/sources/user_fallback.py): read
# from the store, as read recently when the store failed, or not at all (cold start).
FRESH, STALE, DEGRADED = "fresh", "stale", "degraded"


# Where a candidate came from: the code in the `retrieval_source` column indexes this.
SOURCES = ("given", "embedding", "interest", "popular", "lexical", "semantic")
GIVEN, EMBEDDING, INTEREST, POPULAR, LEXICAL, SEMANTIC = range(len(SOURCES))

# The rule that moved a row: the code in the `rule` column indexes this ("" = none).
RULES = ("", "diversity", "mmr", "exploration")
NO_RULE, DIVERSITY, MMR, EXPLORATION = range(len(RULES))


@dataclass(frozen=True)
class Rules:
    """The business rules after ranking, as one request resolved them (0 = off)."""

    max_per_category: int = 0
    diversity_window: int = 0  # 0 = top_k, or every rank
    mmr_lambda: float = 0.0
    temperature: float = 0.0
    seed: int = 0

    @property
    def reorder(self) -> bool:
        """Some rule reorders the ranking, so it must be ordered whole before the cut."""
        return bool(self.max_per_category or self.mmr_lambda or self.temperature)


@dataclass(frozen=True)
class RankQuery:
    user_id: str
    candidates: list[str]  # distinct, in request order; empty = retrieve
    top_k: int  # 0 = all
    explain: bool
    terms: tuple[str, ...] = ()  # the query's search terms; () = no query
    text: str = ""  # the query as typed, for the language model; read only with terms
    retrieval_size: int = 0  # candidates to retrieve when none are given
    exclude_interacted: bool = False
    blocked: frozenset[str] = frozenset()
    matches_only: bool = False  # drop given candidates the query does not match
    rules: Rules = Rules()


class Batch(dict[str, np.ndarray]):
    """One request's candidates as named columns, row i of each for ids[i], and its user.

    A stage reads the columns it needs with batch[name] and writes those it
    gives with batch[name] = array: a dict, so both are C calls. take() keeps
    some rows in a new order, lazily: it sets the columns aside in one C-level
    copy, and a column is reordered only when a later stage reads it, so a
    top-k of 1000 candidates copies only the columns the ranking then uses.
    len(batch) is the number of rows (candidates), not of columns.
    """

    __slots__ = (
        "_counted",
        "_layers",
        "catalogue",
        "ids",
        "matched",
        "query",
        "query_vector",
        "removed",
        "user",
    )

    def __init__(self, query: RankQuery, user: UserRow) -> None:
        super().__init__()
        self.query = query
        self.user = user
        self.ids = query.candidates
        # The catalogue index this request reads (server/retrieval), pinned by its
        # first stage so a rebuild mid-request cannot mix two; None when none is built.
        self.catalogue: CatalogueView | None = None
        # The query's BM25 scores and relevance over the whole catalogue, row-aligned
        # with it (not with the candidates): computed once, by the first stage to need it.
        self.matched: tuple[np.ndarray, np.ndarray] | None = None
        # The query's text vector (unit length) from the language model; None without a
        # query, or where semantic search is off.
        self.query_vector: np.ndarray | None = None
        # (item id, rule) of each candidate a filter removed, for explain.
        self.removed: list[tuple[str, str]] = []
        # Per take, oldest first: the columns as they were before it, and its rows.
        self._layers: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
        self._counted: tuple[np.ndarray | None, int] = (None, 0)

    def __missing__(self, name: str) -> np.ndarray:
        """A column set before a take, read for the first time since: reorder it."""
        for depth in range(len(self._layers) - 1, -1, -1):
            columns = self._layers[depth][0]
            if name in columns:
                values = columns[name]
                for _, rows in self._layers[depth:]:
                    values = values.take(rows, axis=0)
                self[name] = values
                return values
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or any(name in c for c, _ in self._layers)

    def get(self, name: str, default: np.ndarray) -> np.ndarray:  # type: ignore[override]
        try:
            return self[name]  # through __missing__, for a column set before a take
        except KeyError:
            return default

    def take(self, rows: np.ndarray) -> None:
        """Keep these rows, in this order, of the ids and of every column."""
        self.ids = list(map(self.ids.__getitem__, rows.tolist()))
        self._layers.append((dict(self), rows))
        self.clear()

    def known_count(self) -> int:
        """How many rows are known items; counted once per `known` column."""
        known = self["known"]
        if known is not self._counted[0]:
            # count_nonzero: a third of the cost of .all() and .any() through numpy's reductions.
            self._counted = (known, int(np.count_nonzero(known)))
        return self._counted[1]

    def __len__(self) -> int:
        return len(self.ids)


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
    source: np.ndarray  # int8 codes into SOURCES
    bm25: np.ndarray
    semantic: np.ndarray  # cosine of the query's and the item's text vectors
    query_relevance: np.ndarray
    rule: np.ndarray  # int8 codes into RULES
    rule_from: np.ndarray  # int32: the 1-based rank before the rule moved it; 0 = unmoved


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
    served: str = FRESH  # FRESH, STALE or DEGRADED
    removed: list[tuple[str, str]] | None = None  # (item id, rule); only with explain
