"""The method's scoring math, pure numpy over all candidates at once: one
definition that training and serving share, so the two agree to the last bit."""

from __future__ import annotations

import numpy as np


def cosine_similarity(
    user_vector: np.ndarray,
    item_vectors: np.ndarray,
    item_norms: np.ndarray | None = None,
    dots: np.ndarray | None = None,
) -> np.ndarray:
    """cos(user, item) per item row; 0 wherever either vector is zero.

    The same arithmetic as rowwise_cosine with the user on every row, which
    training uses, so the two agree to the last bit. item_norms: row_norms of
    item_vectors, when the caller keeps them (the item cache does). dots:
    user_dots(user_vector, item_vectors), when the caller has already computed them.
    """
    if dots is None:
        dots = user_dots(user_vector, item_vectors)
    norms = row_norms(item_vectors) if item_norms is None else item_norms
    return cosine_from_dots(dots, norms, row_norms(user_vector))


def user_dots(user_vector: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """user . item per item row, summed as training's row-wise einsum sums them."""
    dots: np.ndarray = np.einsum("ij,j->i", item_vectors, user_vector)
    return dots


def combined_bias(user_bias: float | np.ndarray, item_bias: np.ndarray) -> np.ndarray:
    """The method's bias term of a (user, item) pair: item_bias x user_bias."""
    product: np.ndarray = item_bias * np.asarray(user_bias, dtype=np.float32)
    return product if product.dtype == np.float32 else product.astype(np.float32)


def heuristic_score(similarity: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The method's recommendation score, the baseline and the fallback."""
    score: np.ndarray = np.multiply(similarity, bias, dtype=np.float32)
    return score


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a[r], b[r]) for each row r; 0 wherever either row is zero."""
    return cosine_from_dots(np.einsum("ij,ij->i", a, b), row_norms(a), row_norms(b))


def row_norms(a: np.ndarray) -> np.ndarray:
    """The L2 norm of each row (of the last axis): np.linalg.norm(a, axis=-1)'s own
    arithmetic without its Python wrapper, which cost more than the sum here."""
    norms: np.ndarray = np.sqrt(np.add.reduce(a * a, axis=-1))
    return norms


def cosine_from_dots(
    dots: np.ndarray, a_norms: np.ndarray, b_norms: np.ndarray | np.floating
) -> np.ndarray:
    """dots / (|a| |b|) per row; 0 where either norm is 0."""
    denominator = a_norms * b_norms
    positive = denominator > 0
    if np.count_nonzero(positive) == dots.size:
        # No zero norm (the common case): the same quotients without a masked divide.
        quotient: np.ndarray = dots / denominator
        return quotient if quotient.dtype == np.float32 else quotient.astype(np.float32)
    out = np.zeros_like(dots, dtype=np.float32)
    np.divide(dots, denominator, out=out, where=positive)
    return out
