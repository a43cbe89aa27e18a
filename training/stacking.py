"""Stacking without leakage: the ranker learns from interactions its inputs never saw.

The scheme. Per user, the latest STACK_PER_USER positive pairs of the training
events (a pair's first cart, purchase or rating) are the stack:
- the learned embeddings train on every other choice pair of the training
  events, never on a stack pair;
- the ranker trains on the stack pairs against sampled negatives;
- what is served is what the ranker learned from: the same embeddings, and the
  same point-in-time features.

Why nothing leaks:
- the embeddings never see a stack pair, so a stack positive's embedding score
  is that of an unseen interaction, as the held-out item's is when served;
- the interest vectors, biases and activity come from Feast point in time: each
  row joins the newest snapshot before its event, computed from earlier events,
  so they never count the stack pair either;
- the held-out (test) split is used by neither.

A user with no more than STACK_PER_USER positives gives no stack row: their
positives train the embeddings, which would otherwise know nothing of them.
The stack is also the validation split: the embedding learners are compared on
it (training.peers), and the quality gate scores the ranker on its newest tenth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# One (`train --stack-per-user 1`): the ranker learns the task it is judged on,
# each user's next item, and the embeddings lose the fewest interactions.
STACK_PER_USER = 1


def stack_pairs(positives: pd.DataFrame, per_user: int = STACK_PER_USER) -> pd.DataFrame:
    """Each user's latest per_user rows of positives (user_id, item_id, ts: a pair's
    first positive event), for users with more than that; in time order."""
    if per_user < 1:
        raise ValueError(f"stack per user must be at least 1, not {per_user}")
    ordered = positives.sort_values(["user_id", "ts"], kind="stable")
    grouped = ordered.groupby("user_id", sort=False)
    from_end = grouped.cumcount(ascending=False)
    count = grouped["item_id"].transform("size")
    chosen = ordered[(from_end < per_user) & (count > per_user)]
    return chosen.sort_values("ts", kind="stable").reset_index(drop=True)


def without(pairs: pd.DataFrame, stack: pd.DataFrame) -> pd.DataFrame:
    """The (user_id, item_id) pairs that are not in the stack."""
    held = pd.MultiIndex.from_arrays([stack["user_id"], stack["item_id"]])
    keys = pd.MultiIndex.from_arrays([pairs["user_id"], pairs["item_id"]])
    kept: pd.DataFrame = pairs[~np.asarray(keys.isin(held))]
    return kept
