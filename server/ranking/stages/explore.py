"""Explore: the order sampled from a softmax of the scores, reproducibly."""

from __future__ import annotations

import zlib

import numpy as np

from server.ranking.batch import EXPLORATION, Batch
from server.ranking.stages.diversity import mark_reordered


class Explore:
    """With a temperature T > 0, the ranking becomes a draw without replacement
    from softmax(score / T) (Plackett-Luce): the first item is i with probability
    exp(s_i / T) / sum_j exp(s_j / T), the next likewise among the rest. Drawn by
    the Gumbel-max trick, one sort. The generator is seeded by the request's seed,
    else by its user and query, so the same request gives the same order."""

    name = "explore"
    needs = ("score", "rule", "rule_from")
    gives = ("rule", "rule_from")

    def __call__(self, batch: Batch) -> None:
        query = batch.query
        temperature = query.rules.temperature
        if not temperature or len(batch) < 2:
            return
        seed = query.rules.seed or request_seed(query.user_id, query.terms)
        order = softmax_order(batch["score"], temperature, np.random.default_rng(seed))
        mark_reordered(batch, order, EXPLORATION)


def request_seed(user_id: str, terms: tuple[str, ...]) -> int:
    return zlib.crc32(" ".join((user_id, *terms)).encode())


def softmax_order(score: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """A Plackett-Luce draw of all rows: argsort of -(score / T + Gumbel noise)."""
    keys = score.astype(np.float64) / temperature + rng.gumbel(size=score.size)
    order: np.ndarray = np.argsort(-keys, kind="stable")
    return order
