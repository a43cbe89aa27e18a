import math

import numpy as np
import pytest

from training.metrics import auc, hit_rate, ndcg, ranked_relevance


def test_ranked_relevance_sorts_by_score_keeping_ties_in_order() -> None:
    scores = np.array([0.1, 0.9, 0.1, 0.5])
    labels = np.array([1, 0, 0, 1])
    assert ranked_relevance(scores, labels).tolist() == [0, 1, 1, 0]


def test_ndcg_of_one_positive_at_rank_three() -> None:
    relevance = np.array([0, 0, 1, 0])
    assert ndcg(relevance, 10) == pytest.approx(1 / math.log2(4))
    assert ndcg(relevance, 2) == 0.0


def test_ndcg_with_two_positives_against_the_ideal() -> None:
    relevance = np.array([1, 0, 1])
    ideal = 1 + 1 / math.log2(3)
    assert ndcg(relevance, 10) == pytest.approx((1 + 1 / math.log2(4)) / ideal)


def test_ndcg_is_zero_without_positives() -> None:
    assert ndcg(np.zeros(5), 10) == 0.0


def test_hit_rate_counts_a_positive_inside_k_only() -> None:
    relevance = np.array([0, 0, 1])
    assert hit_rate(relevance, 3) == 1.0
    assert hit_rate(relevance, 2) == 0.0


def test_auc_counts_pairs_and_half_ties() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    # pairs (pos, neg): (0.9,0.5) win, (0.9,0.1) win, (0.5,0.5) tie, (0.5,0.1) win
    assert auc(scores, labels) == pytest.approx(3.5 / 4)
    assert math.isnan(auc(scores, np.ones(4)))


def test_auc_equals_the_pair_count_with_many_ties() -> None:
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 7, 500).astype(np.float32)  # seven values: ties everywhere
    labels = (rng.random(500) < 0.3).astype(np.float32)
    pos, neg = scores[labels > 0], scores[labels <= 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc(scores, labels) == pytest.approx(wins / (pos.size * neg.size), abs=1e-12)


def test_sample_unseen_never_returns_a_seen_item_and_is_seeded() -> None:
    from training.evaluate import sample_unseen

    catalog = np.array([f"i{n}" for n in range(50)], dtype=object)
    seen = {f"i{n}" for n in range(0, 50, 2)}
    first = sample_unseen(np.random.default_rng(4), catalog, seen, 10)
    assert len(set(first)) == 10 and not set(first) & seen
    assert first == sample_unseen(np.random.default_rng(4), catalog, seen, 10)
    # nearly everything seen: the remainder is filtered, and all of it returned
    rest = sample_unseen(np.random.default_rng(4), catalog, set(catalog[:-3].tolist()), 10)
    assert sorted(rest) == ["i47", "i48", "i49"]
