import numpy as np
import pytest

from features.scoring import (
    combined_bias,
    cosine_similarity,
    heuristic_score,
    row_norms,
    rowwise_cosine,
)
from server.ranking.stages.top_k import top_k


def test_cosine_of_a_vector_with_itself_is_one() -> None:
    v = np.array([0.3, 0.0, 4.0], dtype=np.float32)
    assert cosine_similarity(v, v[np.newaxis, :])[0] == pytest.approx(1.0, abs=1e-7)


def test_cosine_with_a_zero_vector_is_zero_on_either_side() -> None:
    v = np.array([1.0, 2.0], dtype=np.float32)
    zero = np.zeros(2, dtype=np.float32)
    assert cosine_similarity(zero, v[np.newaxis, :]).tolist() == [0.0]
    assert cosine_similarity(v, np.stack([zero, v])).tolist() == pytest.approx([0.0, 1.0])


def test_cosine_matches_hand_computed_values() -> None:
    user = np.array([1.0, 0.0], dtype=np.float32)
    items = np.array([[1.0, 1.0], [0.0, 3.0], [2.0, 0.0]], dtype=np.float32)
    assert cosine_similarity(user, items).tolist() == pytest.approx([2**-0.5, 0.0, 1.0])


def test_rowwise_cosine_pairs_rows() -> None:
    a = np.array([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([[1.0, 1.0], [1.0, 1.0], [3.0, 4.0]], dtype=np.float32)
    assert rowwise_cosine(a, b).tolist() == pytest.approx([2**-0.5, 0.0, 1.0])


def test_bias_and_heuristic_are_products() -> None:
    bias = combined_bias(0.5, np.array([0.2, 1.0], dtype=np.float32))
    assert bias.tolist() == pytest.approx([0.1, 0.5])
    score = heuristic_score(np.array([0.5, 0.0], dtype=np.float32), bias)
    assert score.tolist() == pytest.approx([0.05, 0.0])


def test_top_k_orders_best_first() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7], dtype=np.float32)
    assert top_k(scores, 2).tolist() == [1, 3]
    assert top_k(scores, 0).tolist() == [1, 3, 2, 0]


def test_top_k_ties_keep_input_order() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1], dtype=np.float32)
    assert top_k(scores, 0).tolist() == [1, 0, 2, 3, 4]
    assert top_k(scores, 3).tolist() == [1, 0, 2]
    assert top_k(np.zeros(4, dtype=np.float32), 2).tolist() == [0, 1]


def test_top_k_is_capped_at_n() -> None:
    scores = np.array([0.2, 0.4], dtype=np.float32)
    assert top_k(scores, 10).tolist() == [1, 0]


def test_every_top_k_is_a_prefix_of_the_whole_ranking() -> None:
    # Few distinct values, so ties cross every cut: the partial path and the
    # whole sort (k = n) must agree on which tied items come first.
    scores = np.random.default_rng(7).integers(0, 5, 60).astype(np.float32) / 4
    whole = top_k(scores, 0).tolist()
    assert whole == sorted(range(60), key=lambda i: (-scores[i], i))
    for k in range(1, 61):
        assert top_k(scores, k).tolist() == whole[:k]


def test_cosine_of_one_user_equals_trainings_rowwise_cosine_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    for trial in range(100):
        n, d = int(rng.integers(1, 300)), int(rng.integers(1, 200))
        items = rng.random((n, d)).astype(np.float32)
        items[rng.random(n) < 0.1] = 0.0
        user = np.zeros(d, np.float32) if trial % 7 == 0 else rng.random(d).astype(np.float32)
        wide = np.concatenate([items, rng.random((n, 5)).astype(np.float32)], axis=1)
        expected = rowwise_cosine(np.repeat(user[np.newaxis, :], n, axis=0), items)
        assert np.array_equal(cosine_similarity(user, items), expected)
        # A strided view (the cache's gather) and kept norms give the same bits.
        kept = row_norms(wide[:, :d])
        assert np.array_equal(cosine_similarity(user, wide[:, :d], kept), expected)


def test_row_norms_are_numpys_norm_bit_for_bit() -> None:
    rng = np.random.default_rng(2)
    for d in (1, 7, 64, 125, 300):
        a = rng.random((50, d)).astype(np.float32)
        assert np.array_equal(row_norms(a), np.linalg.norm(a, axis=1))
        assert np.array_equal(row_norms(a[3]), np.linalg.norm(a[3:4], axis=1)[0])
