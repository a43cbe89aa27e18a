"""Retrieval on hand-made catalogues: the exact/ANN switch, the blend, buy-exclusion,
cold start and search, through the pipeline's stages with fakes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from features.rows import UserRow
from server.config import Settings
from server.errors import InvalidRequest
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.batch import EMBEDDING, INTEREST, Ranking, RankQuery
from server.ranking.build import Retrieval, build_pipeline
from server.ranking.catalogue import CatalogueUnavailable
from server.ranking.stages.retrieve import blend
from server.retrieval.catalogue import Catalogue, IndexSettings
from server.retrieval.vectors import VectorIndex
from server.transport.requests import to_query
from tests.fakes import COLD, FakeItems, user

ITEMS = {
    "a": ([1.0, 0.0], 0.9),
    "b": ([0.0, 1.0], 0.3),
    "c": ([1.0, 1.0], 0.6),
    "d": ([0.0, 0.0], 0.0),
}
DESCRIBED = {
    "a": ("red running shoe", "shoes"),
    "b": ("blue sandal", "shoes"),
    "c": ("red shirt", "shirts"),
    "d": ("gift card", ""),
}
ME = user([1.0, 0.0], bias=1.0)


class Held:
    def __init__(self, catalogue: Catalogue | None) -> None:
        self.current = catalogue


def catalogue(embeddings: np.ndarray | None = None, exact_max: int = 100) -> Catalogue:
    ids = list(ITEMS)
    vectors = np.array([ITEMS[i][0] for i in ids], np.float32)
    bias = np.array([ITEMS[i][1] for i in ids], np.float32)
    return Catalogue(ids, bias, vectors, embeddings, DESCRIBED, IndexSettings(exact_max, 1, 10))


def rank(query: RankQuery, who: UserRow = ME, held: Catalogue | None = None) -> Ranking:
    source = Held(held if held is not None else catalogue())
    return build_pipeline(FakeItems(ITEMS), None, retrieval=Retrieval(source)).run(query, who)


def retrieval(size: int = 3, **fields: object) -> RankQuery:
    return replace(
        RankQuery("u", [], 0, True, retrieval_size=size, exclude_interacted=True), **fields
    )


def test_exact_search_is_the_matrix_product_best_first() -> None:
    matrix = np.array([[1, 0], [0, 2], [3, 3], [-1, 0]], np.float32)
    index = VectorIndex(matrix, exact_max=4)
    assert index.exact
    found = index.search(np.array([1.0, 0.5], np.float32), 3)
    assert found.rows.tolist() == [2, 0, 1]  # rows 0 and 1 tie at 1.0: row order
    assert found.scores.tolist() == [4.5, 1.0, 1.0]
    without = index.search(np.array([1.0, 0.5], np.float32), 3, np.array([2]))
    assert without.rows.tolist() == [0, 1, 3]


def test_past_the_exact_bound_an_hnsw_graph_answers_with_the_same_neighbours() -> None:
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(2_000, 16)).astype(np.float32)
    query = rng.normal(size=16).astype(np.float32)
    exact = VectorIndex(matrix, exact_max=2_000)
    approximate = VectorIndex(matrix, exact_max=1_999)
    assert exact.exact and not approximate.exact
    truth = exact.search(query, 10)
    found = approximate.search(query, 10)
    assert found.rows.tolist() == truth.rows.tolist()  # 2,000 points: the graph is exact here
    np.testing.assert_allclose(found.scores, truth.scores, rtol=1e-5)
    excluded = approximate.search(query, 10, exclude=truth.rows[:3])
    assert excluded.rows.tolist() == exact.search(query, 10, exclude=truth.rows[:3]).rows.tolist()
    lifted = VectorIndex(matrix, exact_max=1_999, lifted=True)  # scores are still the dots
    assert lifted.search(query, 10).rows.tolist() == truth.rows.tolist()
    np.testing.assert_allclose(lifted.search(query, 10).scores, truth.scores, rtol=1e-4)


def test_blend_alternates_ranks_and_keeps_each_row_once() -> None:
    # 5 (first's 1st), 1 (second's 1st), 1 again (first's 2nd: dropped), 7, then 2
    rows, sources = blend(np.array([5, 1, 2]), np.array([1, 7]), 4)
    assert rows.tolist() == [5, 1, 7, 2]
    assert sources.tolist() == [EMBEDDING, INTEREST, INTEREST, EMBEDDING]


def test_no_candidates_retrieves_the_top_of_the_interest_vector() -> None:
    ranking = rank(retrieval(3))
    # similarity x bias: a 1 x 0.9, c cos 45 x 0.6, b 0 x 0.3 (d ties b, after it by row)
    assert ranking.item_ids == ["a", "c", "b"]
    assert ranking.parts is not None
    assert ranking.parts.source.tolist() == [INTEREST] * 3


def test_retrieval_leaves_out_what_the_user_bought_unless_asked_to_keep_it() -> None:
    buyer = replace(ME, interacted=("a", "zz"))  # an id outside the catalogue is ignored
    assert rank(retrieval(3), buyer).item_ids == ["c", "b", "d"]
    assert rank(retrieval(3, exclude_interacted=False), buyer).item_ids == ["a", "c", "b"]


def test_a_user_with_an_embedding_gets_its_neighbours_blended_with_the_interest_top() -> None:
    embeddings = np.array([[0, 1], [1, 0], [0.5, 0.5], [0.9, 0.0]], np.float32)
    mine = replace(ME, embedding=np.array([1.0, 0.0], np.float32))
    ranking = rank(retrieval(4), mine, catalogue(embeddings))
    # embedding: b 1.0, d 0.9, c 0.5, a 0; interest: a, c, b, d -> b, a, d, c
    assert ranking.parts is not None
    by_item = dict(zip(ranking.item_ids, ranking.parts.source.tolist(), strict=True))
    assert by_item == {"b": EMBEDDING, "a": INTEREST, "d": EMBEDDING, "c": INTEREST}


def test_a_cold_start_user_gets_the_popular_items() -> None:
    ranking = rank(retrieval(2), COLD)
    assert ranking.item_ids == ["a", "c"]
    assert ranking.scores.tolist() == [np.float32(0.9), np.float32(0.6)]


def test_a_query_without_candidates_retrieves_its_bm25_matches() -> None:
    ranking = rank(retrieval(10, terms=("red",)))
    assert sorted(ranking.item_ids) == ["a", "c"]
    assert ranking.parts is not None
    assert ranking.parts.query_relevance.max() == 1.0


def test_a_query_scales_given_candidates_and_can_drop_the_non_matching() -> None:
    query = RankQuery("u", ["b", "a", "c"], 0, True, terms=("shirt",))
    ranking = rank(query)
    assert ranking.item_ids == ["c", "b", "a"]  # only c matches: the others score 0
    only = rank(replace(query, matches_only=True))
    assert only.item_ids == ["c"]
    assert only.removed == [("b", "no_match"), ("a", "no_match")]


def test_retrieval_without_a_built_index_is_a_clear_error() -> None:
    pipeline = build_pipeline(FakeItems(ITEMS), None, retrieval=Retrieval(Held(None)))
    with pytest.raises(CatalogueUnavailable, match="catalogue index is not built"):
        pipeline.run(retrieval(3), ME)
    # given candidates need no index
    assert pipeline.run(RankQuery("u", ["b", "a"], 0, False), ME).item_ids == ["a", "b"]


def test_the_request_resolves_retrieval_and_its_defaults() -> None:
    settings = Settings()
    query = to_query(pb.RankRequest(user_id="u"), settings)
    assert (query.candidates, query.retrieval_size, query.exclude_interacted) == ([], 200, True)
    given = to_query(pb.RankRequest(user_id="u", candidate_item_ids=["a"]), settings)
    assert (given.retrieval_size, given.exclude_interacted) == (0, False)
    kept = to_query(pb.RankRequest(user_id="u", exclude_interacted=False), settings)
    assert not kept.exclude_interacted
    with pytest.raises(InvalidRequest, match="retrieval_size is 6000; the limit is 5000"):
        to_query(pb.RankRequest(user_id="u", retrieval_size=6000), settings)


def test_a_query_matching_nothing_without_candidates_ranks_nothing() -> None:
    ranking = rank(retrieval(10, terms=("unicorn",)))
    assert ranking.item_ids == []
    assert ranking.scores.tolist() == []
