"""The stacking split, exactly: which positives the ranker learns from, and that the
embeddings never see them."""

from __future__ import annotations

import pandas as pd
import pytest

from training.stacking import stack_pairs, without


def positives(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    frame["ts"] = pd.to_datetime(frame["ts"], unit="s", utc=True)
    return frame


EVENTS = positives(
    [
        ("u1", "a", 1),
        ("u2", "a", 2),
        ("u1", "b", 3),
        ("u3", "c", 4),  # u3's only positive: it trains the embeddings, no stack row
        ("u2", "c", 5),
        ("u1", "c", 6),
        ("u2", "b", 5),  # ties u2's "c" in time: the later row in the input is the latest
    ]
)


def test_the_stack_is_each_users_latest_positive_in_time_order() -> None:
    stack = stack_pairs(EVENTS, 1)
    assert stack[["user_id", "item_id"]].values.tolist() == [["u2", "b"], ["u1", "c"]]
    assert stack["ts"].tolist() == list(pd.to_datetime([5, 6], unit="s", utc=True))


def test_more_per_user_and_users_with_too_few_positives() -> None:
    stack = stack_pairs(EVENTS, 2)
    assert stack[["user_id", "item_id"]].values.tolist() == [
        ["u1", "b"],
        ["u2", "c"],
        ["u2", "b"],
        ["u1", "c"],
    ]
    assert stack_pairs(EVENTS, 3).empty  # nobody has more than 3 positives
    with pytest.raises(ValueError, match="at least 1"):
        stack_pairs(EVENTS, 0)


def test_the_embeddings_train_on_every_pair_but_the_stack() -> None:
    # A user's choices include views: a viewed-then-carted stack item goes too.
    choices = pd.DataFrame(
        [("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "a"), ("u2", "b"), ("u2", "c"), ("u3", "c")],
        columns=["user_id", "item_id"],
    )
    kept = without(choices, stack_pairs(EVENTS, 1))
    assert kept.values.tolist() == [
        ["u1", "a"],
        ["u1", "b"],
        ["u2", "a"],
        ["u2", "c"],
        ["u3", "c"],
    ]


def test_where_leakage_would_show_the_learned_vectors_never_saw_the_stack() -> None:
    """Each user's latest positive is an item nobody else touched. Trained on the pairs
    without the stack, implicit's ALS gives those items exactly zero vectors (no data
    reached them), so their score is 0; trained with them, it is not."""
    import numpy as np

    from training.peers import AlsConfig, train_als

    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        for k, item in enumerate(rng.choice(30, 6, replace=False)):
            rows.append((f"u{u}", f"i{item}", k))
        rows.append((f"u{u}", f"only-u{u}", 10))  # the latest: the stack
    events = positives(rows)
    stack = stack_pairs(events, 1)
    assert sorted(stack["item_id"]) == sorted(f"only-u{u}" for u in range(40))
    items = {name: i for i, name in enumerate(sorted(events["item_id"].unique()))}
    users = {name: u for u, name in enumerate(sorted(events["user_id"].unique()))}

    def vectors(pairs: pd.DataFrame) -> np.ndarray:
        learned = train_als(
            pairs["user_id"].map(users).to_numpy(),
            pairs["item_id"].map(items).to_numpy(),
            len(users),
            len(items),
            8,
            5.0,
            AlsConfig(iterations=5),
        )
        return learned.items[[items[i] for i in stack["item_id"]]]

    assert not vectors(without(events, stack)).any()
    assert vectors(events).any()  # the same training with the stack: it would leak


def test_out_of_fold_rows_are_scored_by_the_model_without_their_fold() -> None:
    import numpy as np

    from training.publish import EmbeddingLookup, FoldLookup, fold_of

    users = np.array(["u1", "u1", "u2", "u3", "u2"], dtype=object)
    items = np.array(["a", "b", "a", "c", "a"], dtype=object)
    fold = fold_of(users, items, 3)
    assert fold.tolist() == fold_of(users[::-1], items[::-1], 3)[::-1].tolist()  # by pair
    assert fold[2] == fold[4]  # the same pair, the same fold
    index_u, index_i = pd.Index(["u1", "u2", "u3"]), pd.Index(["a", "b", "c"])
    # Fold f's model scores every pair f + 1: the score names the model that scored it.
    models = [
        EmbeddingLookup(index_u, index_i, np.ones((3, 1), np.float32), np.full((3, 1), f + 1.0))
        for f in range(3)
    ]
    score, cosine = FoldLookup(models).parts(users, items)
    assert score.tolist() == (fold + 1).astype(np.float32).tolist()
    assert cosine.tolist() == [1.0] * 5
