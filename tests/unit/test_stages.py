"""Each stage of a ranking on hand-computed values, over fakes."""

from __future__ import annotations

import numpy as np
import pytest

from features.errors import FeatureSchemaMismatch
from features.rows import UserRow
from server.ranking.batch import Batch, RankQuery
from server.ranking.stages.bias import Bias
from server.ranking.stages.cold_start import ColdStart
from server.ranking.stages.embedding_scores import EmbeddingScores
from server.ranking.stages.gather_items import GatherItems
from server.ranking.stages.heuristic_score import HeuristicScore
from server.ranking.stages.model_score import ModelScore
from server.ranking.stages.similarity import Similarity
from server.ranking.stages.top_k import TopK
from server.ranking.stages.unknown_last import UnknownLast
from tests.fakes import COLD, FakeItems, FakeScorer, user

ITEMS = FakeItems(
    {"a": ([1.0, 0.0], 0.2), "b": ([0.0, 1.0], 0.4), "c": ([1.0, 1.0], 0.8)},
    embeddings={"a": [3.0, 4.0], "b": [0.0, 0.0], "c": [1.0, 2.0]},
)


def gathered(ids: list[str], who: UserRow, top_k: int = 0) -> Batch:
    batch = Batch(RankQuery("u", ids, top_k, False), who)
    GatherItems(ITEMS)(batch)
    return batch


def f32(*values: float) -> list[float]:
    return np.asarray(values, np.float32).tolist()


def test_gather_items_gives_rows_in_request_order_with_unknown_ids_as_zero_rows() -> None:
    batch = gathered(["c", "x", "a"], user([1.0, 0.0]))
    assert batch["known"].tolist() == [True, False, True]
    assert batch["item_vector"].tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    assert batch["item_vector_norm"].tolist() == f32(2**0.5, 0.0, 1.0)
    assert batch["item_bias"].tolist() == f32(0.8, 0.0, 0.2)
    assert batch["item_timestamp"].tolist() == [900.0, 0.0, 900.0]
    assert batch["item_embedding_norm"].tolist() == f32(5**0.5, 0.0, 5.0)


def test_similarity_is_the_cosine_and_zero_for_zero_vectors() -> None:
    batch = gathered(["a", "b", "c", "x"], user([1.0, 0.0]))
    Similarity()(batch)
    assert batch["similarity"].tolist() == f32(1.0, 0.0, 0.70710677, 0.0)


def test_similarity_of_a_cold_start_user_is_zero() -> None:
    batch = gathered(["a", "c"], COLD)
    Similarity()(batch)
    assert batch["similarity"].tolist() == [0.0, 0.0]


def test_similarity_refuses_vectors_of_another_width() -> None:
    batch = gathered(["a"], user([1.0, 0.0, 0.0]))
    with pytest.raises(
        FeatureSchemaMismatch, match="user vectors have 3 dimensions, item vectors 2"
    ):
        Similarity()(batch)


def test_bias_is_user_bias_times_item_bias_and_the_items_own_for_a_cold_user() -> None:
    batch = gathered(["a", "b"], user([1.0, 0.0], bias=0.5))
    Bias()(batch)
    assert batch["bias"].tolist() == f32(0.1, 0.2)
    cold = gathered(["a", "b"], COLD)
    Bias()(cold)
    assert cold["bias"].tolist() == f32(0.2, 0.4)


def test_embedding_scores_are_the_dot_and_the_cosine() -> None:
    batch = gathered(["a", "b", "c"], user([1.0, 0.0], embedding=[1.0, 2.0]))
    EmbeddingScores()(batch)
    assert batch["embedding_score"].tolist() == [11.0, 0.0, 5.0]
    # 11 / (sqrt(5) * 5) and 5 / (sqrt(5) * sqrt(5))
    assert batch["embedding_cosine"].tolist() == f32(0.98386991, 0.0, 1.0)


def test_embedding_scores_are_zero_without_a_user_embedding() -> None:
    batch = gathered(["a", "c"], user([1.0, 0.0]))
    EmbeddingScores()(batch)
    assert batch["embedding_score"].tolist() == [0.0, 0.0]
    assert batch["embedding_cosine"].tolist() == [0.0, 0.0]


def test_heuristic_score_is_similarity_times_bias() -> None:
    batch = gathered(["a", "c"], user([1.0, 0.0], bias=0.5))
    Similarity()(batch)
    Bias()(batch)
    HeuristicScore()(batch)
    # a: 1.0 x 0.1; c: cos 45 degrees x 0.4, multiplied in float32
    expected_c = np.float32(0.70710677) * np.float32(0.4)
    assert batch["heuristic_score"].tolist() == f32(0.1, expected_c)
    assert batch["score"] is batch["heuristic_score"]


def test_model_score_scores_known_items_and_gives_unknown_ones_zero() -> None:
    model = FakeScorer([1.0, 10.0])  # similarity + 10 x bias
    batch = gathered(["a", "x", "c"], user([1.0, 0.0], bias=0.5))
    Similarity()(batch)
    Bias()(batch)
    EmbeddingScores()(batch)
    ModelScore(model, embeddings=False)(batch)
    assert batch["model_score"].tolist() == f32(1.0 + 1.0, 0.0, 0.70710677 + 4.0)
    (inputs,) = model.inputs
    # similarity, bias, user bias, user activity, item bias, conversion, price, then u*i
    assert inputs[0].tolist() == f32(1.0, 0.1, 0.5, 0.5, 0.2, 0.25, 0.75, 1.0, 0.0)


def test_model_score_does_not_call_the_model_for_a_cold_start_user() -> None:
    model = FakeScorer([1.0])
    batch = gathered(["a", "c"], COLD)
    for stage in (Similarity(), Bias(), EmbeddingScores(), ModelScore(model, False)):
        stage(batch)
    assert model.inputs == []
    assert batch["score"].tolist() == [0.0, 0.0]


def test_a_model_with_embeddings_needs_the_embedding_columns() -> None:
    assert "embedding_cosine" not in ModelScore(FakeScorer([1.0]), False).needs
    assert ModelScore(FakeScorer([1.0]), True).needs[-2:] == ("embedding_score", "embedding_cosine")


def test_cold_start_scores_by_item_bias_only_for_an_unknown_user() -> None:
    cold = gathered(["a", "b"], COLD)
    cold["score"] = np.zeros(2, np.float32)
    ColdStart()(cold)
    assert cold["score"].tolist() == f32(0.2, 0.4)
    known = gathered(["a", "b"], user([1.0, 0.0]))
    known["score"] = np.asarray([0.7, 0.3], np.float32)
    ColdStart()(known)
    assert known["score"].tolist() == f32(0.7, 0.3)


def test_unknown_last_zeroes_unknown_scores_and_keys_them_below_every_known_one() -> None:
    batch = gathered(["a", "x", "c"], user([1.0, 0.0]))
    batch["score"] = np.asarray([0.5, 0.9, 0.0], np.float32)
    UnknownLast()(batch)
    assert batch["score"].tolist() == [0.5, 0.0, 0.0]
    assert batch["rank_key"].tolist() == [0.5, -1.0, 0.0]


def test_top_k_keeps_the_best_rows_of_every_column_ties_in_request_order() -> None:
    batch = gathered(["a", "x", "c", "b"], user([1.0, 0.0]), top_k=3)
    batch["score"] = np.asarray([0.5, 0.0, 0.2, 0.5], np.float32)
    batch["rank_key"] = np.asarray([0.5, -1.0, 0.2, 0.5], np.float32)
    TopK()(batch)
    assert batch.ids == ["a", "b", "c"]
    assert batch["score"].tolist() == f32(0.5, 0.5, 0.2)
    assert batch["item_bias"].tolist() == f32(0.2, 0.4, 0.8)


def test_take_is_lazy_and_composes() -> None:
    batch = gathered(["a", "b", "c"], user([1.0, 0.0]))
    batch.take(np.array([2, 0, 1]))
    batch["later"] = np.asarray([7.0, 8.0, 9.0], np.float32)  # given in the new order
    batch.take(np.array([1, 0]))
    assert batch.ids == ["a", "c"]
    assert batch["item_bias"].tolist() == f32(0.2, 0.8)
    assert batch["later"].tolist() == [8.0, 7.0]


def test_a_column_set_before_a_take_is_still_in_the_batch() -> None:
    batch = gathered(["a", "b"], user([1.0, 0.0]))
    batch.take(np.array([1]))
    assert "item_bias" in batch and "nothing" not in batch
    assert batch.get("item_bias", np.zeros(1, np.float32)).tolist() == f32(0.4)
    assert batch.get("nothing", np.zeros(1, np.float32)).tolist() == [0.0]
    assert len(batch) == 1
