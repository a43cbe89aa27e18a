"""The business rules after ranking: filters, the diversity cap, MMR and exploration,
on hand-made catalogues, with exact expected orders."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import chisquare

from server.config import Settings
from server.errors import InvalidRequest
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.batch import DIVERSITY, EXPLORATION, MMR, NO_RULE, Ranking, RankQuery, Rules
from server.ranking.build import Retrieval, build_pipeline
from server.ranking.stages.diversity import capped_order
from server.ranking.stages.explore import request_seed, softmax_order
from server.ranking.stages.mmr import mmr_order
from server.retrieval.catalogue import Catalogue, IndexSettings
from server.transport.pages import to_pages
from server.transport.requests import to_query
from tests.fakes import FakeItems, user

# Six items, best first by similarity x bias for ME: s1 s2 s3 (shoes), t1 t2 (shirts), h1.
ITEMS = {
    "s1": ([1.0, 0.0], 0.9),
    "s2": ([1.0, 0.0], 0.8),
    "s3": ([1.0, 0.0], 0.7),
    "t1": ([1.0, 0.0], 0.6),
    "t2": ([1.0, 0.0], 0.5),
    "h1": ([1.0, 0.0], 0.4),
}
CATEGORY = {"s": "shoes", "t": "shirts", "h": "hats"}
ME = user([1.0, 0.0], bias=1.0)
ALL = list(ITEMS)


class Held:
    def __init__(self, catalogue: Catalogue) -> None:
        self.current = catalogue


def held() -> Held:
    ids = list(ITEMS)
    vectors = np.array([ITEMS[i][0] for i in ids], np.float32)
    bias = np.array([ITEMS[i][1] for i in ids], np.float32)
    described = {i: (i, CATEGORY[i[0]]) for i in ids}
    return Held(Catalogue(ids, bias, vectors, None, described, IndexSettings()))


def rank(query: RankQuery, blocked: frozenset[str] = frozenset(), who=ME) -> Ranking:  # type: ignore[no-untyped-def]
    pipeline = build_pipeline(FakeItems(ITEMS), None, retrieval=Retrieval(held(), blocked))
    return pipeline.run(query, who)


def given(top_k: int = 0, **rules: float) -> RankQuery:
    return RankQuery("u", list(reversed(ALL)), top_k, True, rules=Rules(**rules))  # type: ignore[arg-type]


def test_the_diversity_cap_moves_the_excess_after_the_window_in_order() -> None:
    assert capped_order(np.array([0, 0, 0, 1, 1, 2]), 1, 3)[0].tolist() == [0, 3, 5, 1, 2, 4]
    assert capped_order(np.array([0, 0, 0, 1, 1, 2]), 1, 2)[0].tolist() == [0, 3, 1, 2, 4, 5]
    assert capped_order(np.array([0, 0, 0, 1, 1, 2]), 2, 6)[0].tolist() == [0, 1, 3, 4, 5, 2]
    # no category (-1) is never capped
    assert capped_order(np.array([-1, -1, 0, 0]), 1, 3)[0].tolist() == [0, 1, 2, 3]


def test_at_most_m_per_category_in_the_top_k_through_the_pipeline() -> None:
    ranking = rank(given(top_k=4, max_per_category=2))
    assert ranking.item_ids == ["s1", "s2", "t1", "t2"]
    plain = rank(given(top_k=4))
    assert plain.item_ids == ["s1", "s2", "s3", "t1"]
    assert plain.parts is not None and ranking.parts is not None
    assert plain.parts.rule.tolist() == [NO_RULE] * 4
    every = rank(given(max_per_category=1, diversity_window=3))
    assert every.item_ids == ["s1", "t1", "h1", "s2", "s3", "t2"]
    assert every.parts is not None
    assert every.parts.rule.tolist() == [0, 0, 0, DIVERSITY, DIVERSITY, DIVERSITY]
    assert every.parts.rule_from.tolist() == [0, 0, 0, 2, 3, 5]  # their ranks before the cap


def test_mmr_trades_relevance_for_novelty() -> None:
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = np.array([0.9, 0.85, 0.5], np.float32)
    # after a: b gains 0.5 x 0.85 - 0.5 x cos(a, b) ~ -0.07; c 0.5 x 0.5 - 0 = 0.25
    assert mmr_order(scores, vectors, 0.5, 3).tolist() == [0, 2, 1]
    assert mmr_order(scores, vectors, 0.99, 3).tolist() == [0, 1, 2]
    assert mmr_order(scores, vectors, 0.5, 1).tolist() == [0, 1, 2]  # only the first rank


def test_mmr_through_the_pipeline_marks_what_it_moved() -> None:
    # every item has the same vector: after the first, novelty is the same for all
    ranking = rank(given(top_k=3, mmr_lambda=0.5))
    assert ranking.item_ids == ["s1", "s2", "s3"]
    assert ranking.parts is not None and ranking.parts.rule.tolist() == [NO_RULE] * 3
    assert MMR == 2


def test_block_lists_and_buy_exclusion_remove_and_report() -> None:
    buyer = replace(ME, interacted=("s1",))
    query = replace(given(), blocked=frozenset({"t1"}), exclude_interacted=True)
    ranking = rank(query, blocked=frozenset({"h1", "nope"}), who=buyer)
    assert ranking.item_ids == ["s2", "s3", "t2"]
    assert ranking.removed == [("h1", "blocked"), ("t1", "blocked"), ("s1", "interacted")]
    kept = rank(given(), who=buyer)  # given candidates keep bought items by default
    assert kept.item_ids[0] == "s1"
    first = pb.RankResponse.FromString(next(iter(to_pages(ranking, 100))))
    assert [(r.item_id, r.rule) for r in first.removed] == ranking.removed


def test_exploration_is_reproducible_per_seed_and_marks_what_moved() -> None:
    one = rank(given(temperature=0.05, seed=11))
    again = rank(given(temperature=0.05, seed=11))
    assert one.item_ids == again.item_ids
    assert one.parts is not None
    moved = one.parts.rule == EXPLORATION
    assert moved.any()
    assert (one.parts.rule_from[moved] > 0).all()
    derived = request_seed("u", ())
    assert (
        rank(given(temperature=0.05)).item_ids
        == rank(given(temperature=0.05, seed=derived)).item_ids
    )


def test_the_softmax_sampler_matches_its_distribution_negative_scores_included() -> None:
    scores = np.array([-1.0, 0.0, 0.5, 2.0, -3.0], np.float32)
    temperature = 0.7
    weights = np.exp(scores.astype(np.float64) / temperature)
    expected = weights / weights.sum()
    draws = 20_000
    firsts = np.zeros(scores.size)
    seconds_after_3 = np.zeros(scores.size)
    rng = np.random.default_rng(2026)
    for _ in range(draws):
        order = softmax_order(scores, temperature, rng)
        firsts[order[0]] += 1
        if order[0] == 3:
            seconds_after_3[order[1]] += 1
    assert chisquare(firsts, expected * draws).pvalue > 0.001
    # Plackett-Luce: the second draw is the softmax of the rest
    rest = expected.copy()
    rest[3] = 0
    rest /= rest.sum()
    total = seconds_after_3.sum()
    keep = rest > 0
    assert seconds_after_3[3] == 0
    assert chisquare(seconds_after_3[keep], rest[keep] * total).pvalue > 0.001


def test_rule_settings_out_of_range_are_invalid_and_named() -> None:
    settings = Settings()
    base = {"user_id": "u", "candidate_item_ids": ["a"]}
    with pytest.raises(InvalidRequest, match=r"mmr_lambda is 1\.5; it must be in \[0, 1\]"):
        to_query(pb.RankRequest(**base, mmr_lambda=1.5), settings)
    with pytest.raises(InvalidRequest, match=r"exploration_temperature is -1\.0"):
        to_query(pb.RankRequest(**base, exploration_temperature=-1.0), settings)
    with pytest.raises(InvalidRequest, match="exploration_temperature is nan"):
        to_query(pb.RankRequest(**base, exploration_temperature=float("nan")), settings)
    with pytest.raises(InvalidRequest, match=r"block_item_ids\[0\] is empty"):
        to_query(pb.RankRequest(**base, block_item_ids=[""]), settings)
    defaults = replace(settings, max_per_category=2, mmr_lambda=0.3)
    query = to_query(pb.RankRequest(**base), defaults)
    assert (query.rules.max_per_category, query.rules.mmr_lambda) == (2, pytest.approx(0.3))
    off = to_query(pb.RankRequest(**base, max_per_category=0, mmr_lambda=0.0), defaults)
    assert (off.rules.max_per_category, off.rules.mmr_lambda) == (0, 0.0)
