"""Bias: the method's bias term of each (user, item) pair."""

from __future__ import annotations

from features.scoring import combined_bias
from server.ranking.batch import Batch


class Bias:
    """Gives `bias`: item bias x user bias; for a cold-start user, the item's own."""

    name = "bias"
    needs = ("item_bias",)
    gives = ("bias",)

    def __call__(self, batch: Batch) -> None:
        item_bias = batch["item_bias"]
        user = batch.user
        batch["bias"] = combined_bias(user.bias, item_bias) if user.known else item_bias.copy()
