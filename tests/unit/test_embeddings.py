import math

import numpy as np
import pytest
import torch

from training.embeddings import (
    EmbeddingConfig,
    Embeddings,
    _PositiveSet,
    _sample,
    train_embeddings,
)
from training.ncf_eval import hit_rate_ndcg, per_group_hit_rate_ndcg, sample_negatives

ITEMS = [f"i{n}" for n in range(10)]


def test_sample_negatives_never_returns_a_rated_item() -> None:
    rated = {"a": {"i0", "i1", "i2"}, "b": {"i9"}, "c": set(ITEMS[:5])}
    negatives = sample_negatives(rated, ITEMS, n=5, seed=3)
    for user, drawn in negatives.items():
        assert len(set(drawn)) == 5
        assert not set(drawn) & rated[user]
    # Five unrated items and five wanted: all of them, whatever the seed.
    assert set(negatives["c"]) == set(ITEMS[5:])


def test_sample_negatives_is_deterministic_per_seed_and_per_user() -> None:
    rated = {"a": {"i0"}, "b": {"i1"}}
    first = sample_negatives(rated, ITEMS, n=4, seed=11)
    assert sample_negatives(rated, ITEMS, n=4, seed=11) == first
    # A user's draw does not depend on who else is evaluated.
    assert sample_negatives({"b": {"i1"}}, ITEMS, n=4, seed=11) == {"b": first["b"]}
    other_seeds = [sample_negatives(rated, ITEMS, n=4, seed=s)["a"] for s in range(12, 20)]
    assert any(draw != first["a"] for draw in other_seeds)


def test_sample_negatives_refuses_a_user_with_too_few_unrated_items() -> None:
    with pytest.raises(ValueError, match="left 2 unrated"):
        sample_negatives({"a": set(ITEMS[:8])}, ITEMS, n=3)


def test_hit_rate_ndcg_of_hand_ranked_groups() -> None:
    heldout = np.array([0.9, 0.3])
    # Group 0: held-out first. Group 1: held-out third (below 0.9 and 0.5).
    negatives = np.array([[0.1, 0.5, 0.2], [0.9, 0.5, 0.1]])
    assert hit_rate_ndcg(heldout, negatives, k=3) == pytest.approx((1.0, (1 + 1 / 2) / 2))
    assert hit_rate_ndcg(heldout, negatives, k=2) == pytest.approx((0.5, 0.5))
    hits, gains = per_group_hit_rate_ndcg(heldout, negatives, k=3)
    assert hits.tolist() == [1.0, 1.0]
    assert gains.tolist() == pytest.approx([1.0, 1 / math.log2(4)])


def test_a_tie_does_not_favour_the_heldout_item() -> None:
    # 4 candidates all scored alike: a first place one time in four, not always.
    hits, _ = per_group_hit_rate_ndcg(np.zeros(4000), np.zeros((4000, 3)), k=1, seed=5)
    assert 0.22 < hits.mean() < 0.28


def test_hit_rate_ndcg_rejects_nan_scores() -> None:
    with pytest.raises(ValueError, match="finite"):
        hit_rate_ndcg(np.array([np.nan]), np.zeros((1, 3)))


def test_training_negatives_skip_known_positives() -> None:
    users = torch.tensor([0, 0, 0, 1])
    items = torch.tensor([0, 1, 2, 3])
    known = _PositiveSet(users, items, n_users=2, n_items=5)
    generator = torch.Generator().manual_seed(0)
    drawn = _sample(torch.tensor([0] * 50 + [1] * 50), 5, 6, known, generator)
    assert set(drawn[:50].flatten().tolist()) == {3, 4}
    assert set(drawn[50:].flatten().tolist()) == {0, 1, 2, 4}


def test_past_the_dense_bound_the_positives_are_sorted_keys_with_the_same_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users = torch.tensor([0, 0, 0, 1, 1])
    items = torch.tensor([0, 1, 2, 3, 3])
    dense = _PositiveSet(users, items, n_users=2, n_items=5)
    monkeypatch.setattr("training.embeddings.MAX_MASK_CELLS", 9)  # 2 x 5 cells is past it
    sparse = _PositiveSet(users, items, n_users=2, n_items=5)
    assert dense.mask is not None and sparse.mask is None
    assert sparse.keys.tolist() == [0, 1, 2, 8]
    every_user = torch.arange(2).repeat_interleave(5)
    every_item = torch.arange(5).repeat(2)
    assert sparse.contains(every_user, every_item).tolist() == [
        True, True, True, False, False,
        False, False, False, True, False,
    ]  # fmt: skip
    assert torch.equal(
        sparse.contains(every_user, every_item), dense.contains(every_user, every_item)
    )


def test_published_vectors_fold_the_item_bias_into_the_dot_product() -> None:
    embeddings = Embeddings(
        users=np.array([[1.0, 2.0]], dtype=np.float32),
        items=np.array([[3.0, 0.0], [0.0, 1.0]], dtype=np.float32),
        item_bias=np.array([0.5, -1.0], dtype=np.float32),
    )
    users, items = embeddings.published()
    assert (users @ items.T).tolist() == [[3.5, 1.0]]
    assert embeddings.score(np.array([0]), np.array([[1, 0]])).tolist() == [[1.0, 3.5]]


def _blocks(
    groups: int = 4, users_per_group: int = 10, items_per_group: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users of group g rate the items of block g, all but one: that one is held out."""
    user_idx, item_idx, heldout = [], [], []
    for user in range(groups * users_per_group):
        block = user // users_per_group
        left_out = user % items_per_group
        heldout.append(block * items_per_group + left_out)
        for offset in range(items_per_group):
            if offset != left_out:
                user_idx.append(user)
                item_idx.append(block * items_per_group + offset)
    return np.array(user_idx), np.array(item_idx), np.array(heldout)


def test_training_ranks_each_users_heldout_item_above_other_blocks() -> None:
    user_idx, item_idx, heldout = _blocks()
    config = EmbeddingConfig(dim=8, epochs=50, negatives=4, lr=0.05, batch_size=32, seed=1)
    lines: list[str] = []
    embeddings = train_embeddings(user_idx, item_idx, 40, 24, config, lines.append)
    assert len(lines) == 50 and lines[-1].startswith("epoch 50/50")
    # Candidates: the held-out item and the 18 items of the other three blocks.
    others = np.array([[i for i in range(24) if i // 6 != u // 10] for u in range(40)])
    scores = embeddings.score(np.arange(40), np.column_stack([heldout, others]))
    firsts = int((scores.argmax(axis=1) == 0).sum())
    assert firsts == 40


def test_training_is_deterministic_for_a_seed() -> None:
    user_idx, item_idx, _ = _blocks(groups=2, users_per_group=4)
    config = EmbeddingConfig(dim=4, epochs=3, negatives=2, batch_size=8, seed=7)
    first = train_embeddings(user_idx, item_idx, 8, 12, config, lambda _: None)
    again = train_embeddings(user_idx, item_idx, 8, 12, config, lambda _: None)
    assert np.array_equal(first.users, again.users)
    assert np.array_equal(first.items, again.items)
    assert first.item_bias is not None and again.item_bias is not None
    assert np.array_equal(first.item_bias, again.item_bias)
    assert first.users.dtype == np.float32 and first.users.shape == (8, 4)
