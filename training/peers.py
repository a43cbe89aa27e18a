"""The embedding learners side by side: shoprank's MF (training.embeddings) and
implicit's ALS, the library a team would pick instead, on the same pairs.

Each is judged on the validation split, the stack (training.stacking): every
stack positive ranked among VALIDATION_NEGATIVES items its user never chose,
the NCF protocol's way, HR@10 and NDCG@10. ALS is tuned there too, over a small
grid. The best by NDCG@10 is published as the ranker's embedding input; the
test split plays no part in the choice. Without a stack there is nothing to
judge on: MF is published, and ALS is fitted at one untuned point, for the
evaluation table only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from training.embeddings import Embeddings
from training.ncf_eval import hit_rate_ndcg, sample_negatives

VALIDATION_NEGATIVES = 99


@dataclass(frozen=True)
class AlsConfig:
    """implicit's AlternatingLeastSquares over binary choices, confidence 1 + alpha."""

    factors: tuple[int, ...] = (64, 128)
    alphas: tuple[float, ...] = (2.0, 5.0, 10.0)
    regularization: float = 0.1
    iterations: int = 15
    seed: int = 0

    # Without a validation split (no stack) nothing can be tuned: this point alone.
    untuned: tuple[int, float] = (64, 5.0)

    def grid(self, tuned: bool) -> list[tuple[int, float]]:
        return [(f, a) for f in self.factors for a in self.alphas] if tuned else [self.untuned]


def train_als(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    n_users: int,
    n_items: int,
    factors: int,
    alpha: float,
    config: AlsConfig,
) -> Embeddings:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    matrix = sp.csr_matrix(
        (np.ones(user_idx.size, np.float32), (user_idx, item_idx)), shape=(n_users, n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    # implicit's own threads do the work; a threaded BLAS under them only contends.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=config.regularization,
            alpha=alpha,
            iterations=config.iterations,
            random_state=config.seed,
        )
        model.fit(matrix, show_progress=False)
    users = np.asarray(model.user_factors, dtype=np.float32)
    items = np.asarray(model.item_factors, dtype=np.float32)
    return Embeddings(users, items, None)


@dataclass(frozen=True)
class Validation:
    """Stack positives [G] with their users [G] and negatives [G, VALIDATION_NEGATIVES]."""

    users: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray

    def score(self, embeddings: Embeddings) -> dict[str, float]:
        users, items = embeddings.published()
        rows = users[self.users]
        held = np.einsum("gd,gd->g", rows, items[self.positives])
        others = np.einsum("gd,gcd->gc", rows, items[self.negatives])
        hr, ndcg = hit_rate_ndcg(held, others)
        return {"hr@10": hr, "ndcg@10": ndcg}


def validation_groups(
    chosen_users: np.ndarray,
    chosen_items: np.ndarray,
    stack_users: np.ndarray,
    stack_items: np.ndarray,
    n_items: int,
    seed: int = 0,
) -> Validation:
    """The stack's groups; negatives exclude every item the user chose, stack included."""
    rated: dict[int, set[int]] = {}
    for u, i in zip(
        np.concatenate([chosen_users, stack_users]).tolist(),
        np.concatenate([chosen_items, stack_items]).tolist(),
        strict=True,
    ):
        rated.setdefault(u, set()).add(i)
    users = sorted(set(stack_users.tolist()))
    drawn = sample_negatives(
        {u: rated[u] for u in users}, range(n_items), VALIDATION_NEGATIVES, seed
    )
    negatives = np.array([drawn[u] for u in stack_users.tolist()], dtype=np.int64)
    return Validation(stack_users.astype(np.int64), stack_items.astype(np.int64), negatives)


@dataclass(frozen=True)
class Learned:
    name: str
    embeddings: Embeddings
    validation: dict[str, float]
    seconds: float


def best(learned: list[Learned]) -> Learned:
    """The best on validation NDCG@10; the first listed wins a tie."""
    return max(learned, key=lambda entry: entry.validation["ndcg@10"])


def timed(name: str, fit: Callable[[], Embeddings], validation: Validation | None) -> Learned:
    started = time.perf_counter()
    embeddings = fit()
    seconds = time.perf_counter() - started
    figures = validation.score(embeddings) if validation is not None else {}
    return Learned(name, embeddings, figures, seconds)
