"""The method's feature formulas, as pure numpy over integer-indexed events.

- item vector: the one-hot of an item's attribute tokens, token j weighted by
  ``1/|D_j|`` (D_j: the items carrying j), L2-normalised;
- user vector: ``sum_i w_i * behaviour_i``, the vectors of the items the user
  interacted with, each weighted by its event type (``EVENT_WEIGHTS``) and by
  the item's inverse user frequency ``1/|C_i|`` (C_i: the users who
  interacted with item i), L2-normalised;
- item_bias: smoothed log-popularity ``log(2 + |C_i|) / log(2 + max_i |C_i|)``,
  in (0, 1], so an item nobody touched still gets a small positive bias;
- item_conversion: conversions per interacting user, shrunk towards the
  global rate with ``CONVERSION_PRIOR`` pseudo-users (Bayesian average);
- user_bias: the user's propensity to convert, conversions over events,
  shrunk towards the global rate with ``CONVERSION_PRIOR`` pseudo-events;
- user_activity: ``log1p(number of events)``.

All statistics come from the Aggregates of the events given, which callers
build from events strictly before the feature timestamp: no leakage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from features.schema import split_attributes

CONVERSION_PRIOR = 10.0
# Every item and user vector, and every request's model input, is this wide at
# most. A long tail of rare tokens (the Complete Journey has 2,720, mostly
# product types) would make each item row kilobytes for attributes that few
# items share; the most widely carried tokens keep the vectors useful and small.
MAX_VOCABULARY = 256


@dataclass(frozen=True)
class Vocabulary:
    tokens: tuple[str, ...]

    @classmethod
    def from_attributes(cls, attributes: list[str], max_tokens: int = MAX_VOCABULARY) -> Vocabulary:
        """The `max_tokens` tokens carried by the most items (ties by name), sorted."""
        counts = Counter(t for a in attributes for t in set(split_attributes(a)))
        kept = sorted(counts, key=lambda t: (-counts[t], t))[:max_tokens]
        return cls(tuple(sorted(kept)))

    def index(self) -> dict[str, int]:
        return {token: j for j, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Interactions:
    """Events as integer indexes: who did what to which item, with what weight."""

    user: np.ndarray  # int64 index into the user table
    item: np.ndarray  # int64 index into the catalog
    weight: np.ndarray  # float64 event-type weight
    converted: np.ndarray  # bool: the event is a conversion
    n_users: int
    n_items: int
    ts: np.ndarray | None = None  # int64 microseconds since the epoch, where known


@dataclass(frozen=True)
class UserFeatures:
    vector: np.ndarray  # float32 [n_users, D]
    bias: np.ndarray  # float32 [n_users]
    activity: np.ndarray  # float32 [n_users]
    active: np.ndarray  # bool [n_users]: has at least one event


@dataclass(frozen=True)
class ItemStats:
    bias: np.ndarray  # float32 [n_items]
    conversion: np.ndarray  # float32 [n_items]


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out = np.zeros_like(matrix)
    np.divide(matrix, norms, out=out, where=norms > 0)
    return out


def item_vectors(attributes: list[str], vocabulary: Vocabulary) -> np.ndarray:
    index = vocabulary.index()
    rows: list[int] = []
    cols: list[int] = []
    for i, attribute in enumerate(attributes):
        for token in set(split_attributes(attribute)):
            j = index.get(token)
            if j is not None:
                rows.append(i)
                cols.append(j)
    onehot = sp.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(attributes), len(vocabulary))
    )
    carriers = np.asarray(onehot.sum(axis=0)).ravel()
    inverse = np.divide(1.0, carriers, out=np.zeros_like(carriers), where=carriers > 0)
    weighted = sp.csr_matrix(onehot.multiply(inverse[np.newaxis, :])).toarray()
    return l2_normalise(weighted).astype(np.float32)


@dataclass(frozen=True)
class Aggregates:
    """Everything the formulas need from the events so far, bounded by users x items
    touched rather than by the number of events."""

    weights: sp.csr_matrix  # [users, items]: summed event-type weights
    conversions: sp.csr_matrix  # [users, items]: conversion events
    user_events: np.ndarray  # float64 [users]
    user_conversions: np.ndarray  # float64 [users]

    @property
    def n_users(self) -> int:
        return int(self.user_events.shape[0])

    @classmethod
    def empty(cls, n_items: int) -> Aggregates:
        zero = sp.csr_matrix((0, n_items), dtype=np.float64)
        return cls(zero, zero.copy(), np.zeros(0), np.zeros(0))

    @classmethod
    def of(cls, events: Interactions) -> Aggregates:
        shape = (events.n_users, events.n_items)
        converted = events.converted.astype(np.float64)
        return cls(
            weights=sp.csr_matrix((events.weight, (events.user, events.item)), shape=shape),
            conversions=sp.csr_matrix((converted, (events.user, events.item)), shape=shape),
            user_events=np.bincount(events.user, minlength=events.n_users).astype(np.float64),
            user_conversions=np.bincount(events.user, weights=converted, minlength=events.n_users),
        )

    def plus(self, events: Interactions) -> Aggregates:
        """These aggregates with a later batch of events added (users may be new)."""
        batch = Aggregates.of(events)
        users = max(self.n_users, batch.n_users)
        return Aggregates(
            weights=_grown(self.weights, users) + _grown(batch.weights, users),
            conversions=_grown(self.conversions, users) + _grown(batch.conversions, users),
            user_events=_padded(self.user_events, users) + _padded(batch.user_events, users),
            user_conversions=_padded(self.user_conversions, users)
            + _padded(batch.user_conversions, users),
        )


def _grown(matrix: sp.csr_matrix, rows: int) -> sp.csr_matrix:
    extra = sp.csr_matrix((rows - matrix.shape[0], matrix.shape[1]), dtype=np.float64)
    return sp.csr_matrix(sp.vstack([matrix, extra], format="csr"))


def _padded(values: np.ndarray, size: int) -> np.ndarray:
    return np.pad(values, (0, size - values.size))


def users_per_item(aggregates: Aggregates) -> np.ndarray:
    """|C_i|: how many distinct users interacted with each item."""
    return np.diff(aggregates.weights.tocsc().indptr).astype(np.float64)


@dataclass(frozen=True)
class ItemBasis:
    """What user features take from everyone's events: each item's inverse user
    frequency and the global conversion rate. A batch snapshot uses the basis of
    its own events; the stream applies later events on the latest snapshot's basis
    (features.streaming), and a later backfill recomputes both."""

    inverse: np.ndarray  # float64 [items]: 1/|C_i|; 1 for an item nobody touched yet
    rate: float  # conversions over events, over all users


def item_basis(aggregates: Aggregates) -> ItemBasis:
    # An untouched item weighs 1/1, as for its first user: a batch never sees such an
    # item in a user's sum, so this changes no batch value.
    counts = users_per_item(aggregates)
    n_events, n_conv = aggregates.user_events, aggregates.user_conversions
    rate = float(n_conv.sum() / n_events.sum()) if n_events.sum() else 0.0
    return ItemBasis(inverse=1.0 / np.maximum(counts, 1.0), rate=rate)


def raw_interest(aggregates: Aggregates, vectors: np.ndarray, basis: ItemBasis) -> np.ndarray:
    """float64 [users, D]: sum_i w_i * behaviour_i before normalisation."""
    weights = sp.csr_matrix(aggregates.weights.multiply(basis.inverse[np.newaxis, :]))
    return np.asarray(weights @ vectors.astype(np.float64))


def finished_user_features(
    raw: np.ndarray, events: np.ndarray, conversions: np.ndarray, rate: float
) -> UserFeatures:
    """The served user features from a user's running sums (batch and stream alike)."""
    bias = (conversions + CONVERSION_PRIOR * rate) / (events + CONVERSION_PRIOR)
    return UserFeatures(
        vector=l2_normalise(raw).astype(np.float32),
        bias=bias.astype(np.float32),
        activity=np.log1p(events).astype(np.float32),
        active=events > 0,
    )


def user_features(
    aggregates: Aggregates, vectors: np.ndarray, basis: ItemBasis | None = None
) -> UserFeatures:
    basis = basis or item_basis(aggregates)
    raw = raw_interest(aggregates, vectors, basis)
    return finished_user_features(
        raw, aggregates.user_events, aggregates.user_conversions, basis.rate
    )


def item_stats(aggregates: Aggregates) -> ItemStats:
    counts = users_per_item(aggregates)
    top = counts.max() if counts.size else 0.0
    bias = np.log(2.0 + counts) / np.log(2.0 + top)
    converting = sp.csr_matrix(aggregates.conversions, copy=True)
    converting.eliminate_zeros()
    converting.data[:] = 1.0  # a user converting twice on an item counts once
    conversions = np.asarray(converting.sum(axis=0)).ravel()
    rate = float(conversions.sum() / counts.sum()) if counts.sum() else 0.0
    conversion = (conversions + CONVERSION_PRIOR * rate) / (counts + CONVERSION_PRIOR)
    return ItemStats(bias=bias.astype(np.float32), conversion=conversion.astype(np.float32))
