"""ColdStart: a user the store does not know is ranked by item bias."""

from __future__ import annotations

from server.ranking.batch import Batch


class ColdStart:
    """Gives `score`: for a cold-start user, each item's own bias (its smoothed
    popularity); otherwise the score as it is."""

    name = "cold_start"
    needs = ("item_bias", "score")
    gives = ("score",)

    def __call__(self, batch: Batch) -> None:
        if not batch.user.known:
            batch["score"] = batch["item_bias"]
