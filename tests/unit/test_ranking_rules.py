"""The README's ranking rules, held on the pipeline and the request conversion
with fakes (tests/e2e holds them again through a real server)."""

from __future__ import annotations

import numpy as np
import pytest

from features.rows import UserRow
from server.config import Settings
from server.errors import InvalidRequest
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.batch import Ranking, RankQuery
from server.ranking.build import build_pipeline
from server.transport.requests import to_query
from tests.fakes import COLD, FakeItems, FakeScorer, user

ITEMS = FakeItems(
    {
        "a": ([1.0, 0.0], 0.9),
        "b": ([0.0, 1.0], 0.3),
        "c": ([1.0, 1.0], 0.6),
        "d": ([0.0, 0.0], 0.0),
    }
)
ME = user([1.0, 0.0], bias=1.0)


def rank(
    ids: list[str], who: UserRow = ME, top_k: int = 0, model: FakeScorer | None = None
) -> Ranking:
    return build_pipeline(ITEMS, model, "0001").run(RankQuery("u", ids, top_k, True), who)


def test_duplicate_candidates_are_ranked_once_at_their_first_occurrence() -> None:
    query = to_query(
        pb.RankRequest(user_id="u", candidate_item_ids=["b", "a", "b", "c", "a"]), Settings()
    )
    assert query.candidates == ["b", "a", "c"]


def test_an_empty_candidate_id_is_invalid_and_named() -> None:
    with pytest.raises(InvalidRequest, match=r"candidate_item_ids\[1\] is empty"):
        to_query(pb.RankRequest(user_id="u", candidate_item_ids=["a", ""]), Settings())


def test_without_a_model_the_score_is_similarity_times_bias() -> None:
    ranking = rank(["b", "a", "c"])
    assert ranking.model_version == "heuristic"
    assert ranking.item_ids == ["a", "c", "b"]
    # a: 1 x 0.9; c: cos 45 degrees x 0.6; b: 0 x 0.3
    assert ranking.scores.tolist() == [
        np.float32(0.9),
        np.float32(0.70710677) * np.float32(0.6),
        0.0,
    ]


def test_an_unknown_user_is_ranked_cold_start_by_item_bias() -> None:
    ranking = rank(["b", "c", "a"], who=COLD)
    assert ranking.cold_start and ranking.user_age == -1.0
    assert ranking.item_ids == ["a", "c", "b"]
    assert ranking.scores.tolist() == np.asarray([0.9, 0.6, 0.3], np.float32).tolist()


def test_unknown_items_rank_after_every_known_one_in_request_order_with_score_zero() -> None:
    # d is known with score 0; x and y are unknown and come after it, as sent.
    ranking = rank(["y", "d", "x", "a"], model=FakeScorer([0.0, 1.0]))  # the bias
    assert ranking.item_ids == ["a", "d", "y", "x"]
    assert ranking.scores.tolist() == [np.float32(0.9), 0.0, 0.0, 0.0]
    assert ranking.parts is not None
    assert ranking.parts.unknown_item.tolist() == [False, False, True, True]
    assert ranking.parts.item_age[2:].tolist() == [-1.0, -1.0]


def test_scores_are_in_zero_one_and_non_increasing_and_top_k_cuts_the_list() -> None:
    ranking = rank(["a", "b", "c", "d", "x"], top_k=3)
    assert len(ranking.item_ids) == 3
    scores = ranking.scores.tolist()
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_explain_gives_the_heuristic_part_beside_a_models_score() -> None:
    ranking = rank(["a", "b"], model=FakeScorer([0.5]))  # half the similarity
    assert ranking.parts is not None
    assert ranking.parts.model_score.tolist() == [0.5, 0.0]
    assert ranking.parts.heuristic.tolist() == [np.float32(0.9), 0.0]
    assert ranking.parts.similarity.tolist() == [1.0, 0.0]
