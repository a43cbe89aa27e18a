"""Ranking metrics over one ranked list, with binary relevance."""

from __future__ import annotations

import numpy as np


def ranked_relevance(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels in ranking order, best score first; ties keep the given order."""
    return labels[np.argsort(-scores, kind="stable")]


def hit_rate(relevance: np.ndarray, k: int) -> float:
    """1 if any relevant item is in the top k, else 0."""
    return float(relevance[:k].any())


def ndcg(relevance: np.ndarray, k: int) -> float:
    """DCG of the top k over the DCG of the ideal order; 0 with nothing relevant."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = relevance[:k].astype(np.float64)
    ideal = np.sort(relevance.astype(np.float64))[::-1][:k]
    best = float(ideal @ discounts[: ideal.size])
    return float(gains @ discounts[: gains.size]) / best if best > 0 else 0.0


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(a random positive outscores a random negative), ties counting half."""
    positives = scores[labels > 0]
    negatives = scores[labels <= 0]
    if positives.size == 0 or negatives.size == 0:
        return float("nan")
    wins = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((wins + 0.5 * ties) / (positives.size * negatives.size))
