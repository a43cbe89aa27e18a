"""HeuristicScore: the method's similarity x bias, when no model is loaded."""

from __future__ import annotations

from features.scoring import heuristic_score
from server.ranking.batch import Batch


class HeuristicScore:
    """Gives `heuristic_score` and `score`: similarity x bias."""

    name = "heuristic_score"
    needs = ("similarity", "bias")
    gives = ("heuristic_score", "score")

    def __call__(self, batch: Batch) -> None:
        batch["heuristic_score"] = batch["score"] = heuristic_score(
            batch["similarity"], batch["bias"]
        )
