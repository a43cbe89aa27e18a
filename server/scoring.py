"""The method's scoring math, pure numpy over all candidates at once."""

from __future__ import annotations

import numpy as np


def cosine_similarity(user_vector: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """cos(user, item) per item row; 0 wherever either vector is zero.

    The row-wise formula over the user broadcast to every row: the one training
    and the batched server use, so all three agree to the last bit.
    """
    return rowwise_cosine(item_vectors, np.broadcast_to(user_vector, item_vectors.shape))


def combined_bias(user_bias: float | np.ndarray, item_bias: np.ndarray) -> np.ndarray:
    """The method's bias term of a (user, item) pair: item_bias x user_bias."""
    return (item_bias * np.asarray(user_bias, dtype=np.float32)).astype(np.float32)


def heuristic_score(similarity: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The method's recommendation score, the baseline and the fallback."""
    score: np.ndarray = np.multiply(similarity, bias, dtype=np.float32)
    return score


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the k best scores, best first; ties keep input order.

    A partition narrows to the k best in O(n), then a stable sort orders
    only those k, so equal scores stay in request order.
    """
    n = scores.shape[0]
    k = n if k <= 0 else min(k, n)
    if k == 0:
        return np.empty(0, dtype=np.int64)
    chosen = np.arange(n)
    if k < n:
        # The k-th best value: everything strictly better, then ties in index order.
        kth = np.partition(-scores, k - 1)[k - 1]
        better = np.flatnonzero(-scores < kth)
        ties = np.flatnonzero(-scores == kth)[: k - better.size]
        chosen = np.sort(np.concatenate([better, ties]))
    best_first: np.ndarray = chosen[np.argsort(-scores[chosen], kind="stable")]
    return best_first


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a[r], b[r]) for each row r; 0 wherever either row is zero."""
    dots = np.einsum("ij,ij->i", a, b)
    denominator = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    out = np.zeros_like(dots, dtype=np.float32)
    np.divide(dots, denominator, out=out, where=denominator > 0)
    return out
