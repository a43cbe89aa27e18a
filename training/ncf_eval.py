"""The NCF evaluation protocol (He et al. 2017), as pure functions.

Leave-one-out: each user's held-out item is ranked among `NEGATIVES` items the user never
rated (in training or held out), drawn uniformly without replacement with a fixed seed;
HR@10 and NDCG@10 are averaged over users. Published results (NeuMF, Rendle et al.'s MF)
are measured this way, so ours are comparable only if every detail matches.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from training.metrics import hit_rate, ndcg, ranked_relevance

K = 10
NEGATIVES = 99

User = TypeVar("User", bound=Hashable)
Item = TypeVar("Item", bound=Hashable)


def sample_negatives(
    rated_by_user: Mapping[User, Collection[Item]],
    all_items: Sequence[Item],
    n: int = NEGATIVES,
    seed: int = 0,
) -> dict[User, list[Item]]:
    """n distinct items per user, none of which the user rated, drawn from all_items.

    rated_by_user must hold every item a user rated, training and held out alike. Each
    user draws from a generator seeded by (seed, the user's id), so a user's negatives do
    not depend on which other users are evaluated; they do depend on the order of
    all_items, so pass it in a fixed order (sorted, or the index order).
    """
    negatives: dict[User, list[Item]] = {}
    for user, rated in rated_by_user.items():
        excluded = rated if isinstance(rated, set | frozenset) else set(rated)
        pool = [item for item in all_items if item not in excluded]
        if len(pool) < n:
            raise ValueError(f"user {user!r} left {len(pool)} unrated items; {n} are needed")
        rng = np.random.default_rng([seed, zlib.crc32(str(user).encode())])
        negatives[user] = [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
    return negatives


def hit_rate_ndcg(
    heldout_scores: np.ndarray, negative_scores: np.ndarray, k: int = K, seed: int = 0
) -> tuple[float, float]:
    """Mean HR@k and NDCG@k over groups: group g ranks heldout_scores[g] among negative_scores[g].

    The held-out item goes to a seeded random position among its candidates before the
    stable sort, so a tie with a negative is won or lost by chance, never by construction.
    """
    hits, gains = per_group_hit_rate_ndcg(heldout_scores, negative_scores, k, seed)
    return float(hits.mean()), float(gains.mean())


def per_group_hit_rate_ndcg(
    heldout_scores: np.ndarray, negative_scores: np.ndarray, k: int = K, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """HR@k and NDCG@k of each group [G], as in hit_rate_ndcg (for spreads and slices)."""
    groups, n = negative_scores.shape
    if heldout_scores.shape != (groups,) or groups == 0:
        raise ValueError("need one held-out score per group of negatives, and some groups")
    if not (np.isfinite(heldout_scores).all() and np.isfinite(negative_scores).all()):
        raise ValueError("scores must be finite; a NaN would rank arbitrarily")
    positions = np.random.default_rng(seed).integers(0, n + 1, size=groups)
    hits = np.empty(groups)
    gains = np.empty(groups)
    for g, at in enumerate(positions):
        scores = np.insert(negative_scores[g], at, heldout_scores[g])
        labels = np.zeros(n + 1)
        labels[at] = 1.0
        relevance = ranked_relevance(scores, labels)
        hits[g] = hit_rate(relevance, k)
        gains[g] = ndcg(relevance, k)
    return hits, gains
