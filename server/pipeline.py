"""One ranking, start to end: fetch -> similarity, bias -> model -> top-k.

The user's row is read first, by `read_user`, which a store with an async client
(Redis) awaits without holding the event loop; `rank` then does the rest, all
in memory: the item gather from the cache, one vectorised scoring pass over the
candidates, one ONNX call and a partial sort.

Rules every caller can rely on (the proto documents them too):
- duplicates in the candidates are ranked once, at their first occurrence;
- an unknown user is ranked cold-start by item bias, flagged COLD_START_USER;
- unknown items are never dropped: they rank after every known item, in
  request order, with score 0, flagged UNKNOWN_ITEM;
- with no model loaded, the score is the heuristic similarity x bias.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from server.errors import FeatureSchemaMismatch
from server.feature_rows import ItemRows, UserRow
from server.model_inputs import assemble
from server.scoring import (
    combined_bias,
    cosine_similarity,
    heuristic_score,
    top_k,
    user_dots,
)

HEURISTIC_VERSION = "heuristic"


class FeatureSource(Protocol):
    async def user(self, user_id: str) -> UserRow: ...

    def items(self, item_ids: Sequence[str]) -> ItemRows: ...


class Scorer(Protocol):
    def score(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class RankQuery:
    user_id: str
    candidates: list[str]  # distinct, in request order
    top_k: int  # 0 = all
    explain: bool


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
    timings: dict[str, float]
    parts: Parts | None  # only when the query asked to explain


@dataclass(frozen=True)
class UserRead:
    row: UserRow
    seconds: float  # how long the read took


class RankingPipeline:
    def __init__(
        self,
        features: FeatureSource,
        model: Scorer | None,
        version: str,
        embeddings: bool = False,
    ) -> None:
        self._features = features
        self._model = model
        self._embeddings = embeddings  # the model takes the embedding inputs
        self._version = version if model is not None else HEURISTIC_VERSION

    @property
    def version(self) -> str:
        return self._version

    async def read_user(self, user_id: str) -> UserRead:
        started = time.perf_counter()
        row = await self._features.user(user_id)
        return UserRead(row, time.perf_counter() - started)

    def rank(self, query: RankQuery, user_read: UserRead) -> Ranking:
        started = time.perf_counter()
        user = user_read.row
        items = self._features.items(query.candidates)
        fetched = time.perf_counter()
        known = items.known
        # count_nonzero: a third of the cost of .all() and .any() through numpy's reductions.
        found = int(np.count_nonzero(known))
        all_known = found == len(known)  # the common case: nothing to mask out
        any_known = found > 0
        similarity, bias = self._parts(user, items, any_known)
        embedded = embedding_parts(user, items)
        modelled = scored = time.perf_counter()
        if user.known and self._model is not None and any_known:
            inputs = self._inputs(
                user, items, similarity, bias, embedded if self._embeddings else None
            )
            modelled = time.perf_counter()
            model_score = self._model.score(inputs)
            if not all_known:
                model_score = np.where(known, model_score, np.float32(0.0))
            scored = time.perf_counter()
        else:
            model_score = np.zeros(len(items), dtype=np.float32)
        heuristic = None  # the score without a model, and a part when explaining
        if self._model is None or query.explain:
            if user.known:
                heuristic = heuristic_score(similarity, bias)
            else:
                heuristic = np.zeros(len(items), dtype=np.float32)
        if not user.known:
            scores = bias
        elif heuristic is not None and self._model is None:
            scores = heuristic
        else:
            scores = model_score
        # Scores are in [0, 1]; -1 sends unknown items after every known one.
        order = top_k(
            scores if all_known else np.where(known, scores, np.float32(-1.0)), query.top_k
        )
        now = time.time()
        parts = None
        if query.explain:
            assert heuristic is not None
            parts = Parts(
                similarity=similarity[order],
                bias=bias[order],
                model_score=model_score[order],
                heuristic=heuristic[order],
                embedding_score=embedded[0][order],
                item_age=np.where(known, now - items.timestamp, -1.0)[order],
                unknown_item=~known[order],
            )
        ranked = scores[order]
        return Ranking(
            item_ids=list(map(query.candidates.__getitem__, order.tolist())),
            scores=ranked if all_known else np.where(known[order], ranked, np.float32(0.0)),
            cold_start=not user.known,
            user_age=now - user.timestamp if user.known else -1.0,
            model_version=self._version,
            timings={
                "fetch": user_read.seconds + fetched - started,
                "score": modelled - fetched,  # similarity, bias and the model's inputs
                "model": scored - modelled,  # the ONNX call
                "rank": time.perf_counter() - scored,
            },
            parts=parts,
        )

    @staticmethod
    def _parts(user: UserRow, items: ItemRows, any_known: bool) -> tuple[np.ndarray, np.ndarray]:
        """(similarity, bias) per candidate; a cold-start bias is the item's."""
        if not user.known:
            return np.zeros(len(items), dtype=np.float32), items.bias.copy()
        if any_known and items.vectors.shape[1] != user.vector.shape[0]:
            raise FeatureSchemaMismatch(
                f"user vectors have {user.vector.shape[0]} dimensions, item vectors "
                f"{items.vectors.shape[1]}; re-run `shoprank features materialize`"
            )
        if any_known:
            similarity = cosine_similarity(user.vector, items.vectors, items.vector_norms)
        else:
            similarity = np.zeros(len(items), dtype=np.float32)
        return similarity, combined_bias(user.bias, items.bias)

    @staticmethod
    def _inputs(
        user: UserRow,
        items: ItemRows,
        similarity: np.ndarray,
        bias: np.ndarray,
        embedded: tuple[np.ndarray, np.ndarray] | None,
    ) -> np.ndarray:
        return assemble(
            similarity,
            bias,
            user.vector,
            user.bias,
            user.activity,
            items.vectors,
            items.bias,
            items.conversion,
            items.price,
            embedded,
        )


def embedding_parts(user: UserRow, items: ItemRows) -> tuple[np.ndarray, np.ndarray]:
    """(dot product, cosine) of the learned embeddings; zeros where either side has none.

    The row-wise formulas training uses (training/publish.py), so serving agrees
    with training to the last bit.
    """
    if user.embedding is None or items.embeddings is None or user.embedding.size == 0:
        return _zeros(len(items))
    if items.embeddings.shape[1] != user.embedding.size:
        if not items.embeddings.shape[1]:
            return _zeros(len(items))
        raise FeatureSchemaMismatch(
            f"user embeddings have {user.embedding.size} dimensions, item embeddings "
            f"{items.embeddings.shape[1]}; re-publish the embeddings"
        )
    score = user_dots(user.embedding, items.embeddings).astype(np.float32, copy=False)
    cosine = cosine_similarity(user.embedding, items.embeddings, items.embedding_norms, score)
    return score, cosine


def _zeros(n: int) -> tuple[np.ndarray, np.ndarray]:
    zeros = np.zeros(n, dtype=np.float32)
    return zeros, zeros
