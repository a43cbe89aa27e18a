"""Semantic search on a hand-made catalogue: the hybrid relevance's exact values, the
query cache, and retrieval by meaning, with a fake encoder (tests/integration holds
the real one to sentence-transformers)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from features.relevance import SEMANTIC_FLOOR, hybrid_relevance
from server.ranking.batch import LEXICAL, SEMANTIC, SOURCES, Ranking, RankQuery
from server.ranking.build import Retrieval, build_pipeline
from server.retrieval.catalogue import Catalogue, IndexSettings
from server.retrieval.query_encoder import QueryEncoder
from tests.fakes import FakeItems, user

ITEMS = {
    "runner": ([1.0, 0.0], 0.5),
    "sandal": ([1.0, 0.0], 0.9),
    "mug": ([0.0, 1.0], 0.8),
    "racer": ([1.0, 0.0], 0.2),
}
DESCRIBED = {
    "runner": ("trail runner running shoes", "shoes"),
    "sandal": ("beach sandal", "shoes"),
    "mug": ("coffee mug sneakers print", "kitchen"),  # the only BM25 match of "sneakers"
    "racer": ("road racer running shoes", "shoes"),
}
# Unit text vectors: the shoes near one another, the mug far.
TEXT = np.array(
    [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0], [0.8, 0.6, 0.0]], dtype=np.float32
)
SNEAKERS = np.array([0.8, 0.6, 0.0], np.float32)  # what the fake encodes "sneakers" to


class FakeEncoder:
    """Counts its calls: a test can tell whether the model ran."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], batch: int = 64) -> np.ndarray:
        self.calls.append(list(texts))
        return np.tile(SNEAKERS, (len(texts), 1))


class Held:
    def __init__(self, catalogue: Catalogue) -> None:
        self.current = catalogue


def catalogue(text: np.ndarray | None = TEXT) -> Catalogue:
    ids = list(ITEMS)
    vectors = np.array([ITEMS[i][0] for i in ids], np.float32)
    bias = np.array([ITEMS[i][1] for i in ids], np.float32)
    settings = IndexSettings(100, 1, 10)
    return Catalogue(ids, bias, vectors, None, DESCRIBED, settings, text)


def rank(query: RankQuery, share: float = 0.5, text: np.ndarray | None = TEXT) -> Ranking:
    encoder = QueryEncoder(FakeEncoder(), capacity=8)  # type: ignore[arg-type]
    retrieval = Retrieval(Held(catalogue(text)), encoder=encoder, lexical_share=share)
    pipeline = build_pipeline(FakeItems(ITEMS), None, retrieval=retrieval)
    return pipeline.run(query, user([1.0, 0.0], bias=1.0))


def search(size: int = 4, **fields: object) -> RankQuery:
    query = RankQuery("u", [], 0, True, ("sneakers",), "Sneakers", retrieval_size=size)
    return replace(query, **fields)


def test_the_hybrid_relevance_is_each_part_over_its_best_then_fused() -> None:
    lexical = np.array([2.0, 1.0, 0.0, 0.0], np.float32)
    cosine = np.array([0.2, 0.6, 1.0, 0.1], np.float32)
    fused = hybrid_relevance(lexical, cosine, np.float32(0.5))
    # lexical over best: 1, .5, 0, 0; semantic (cos - .2)+ over best (.8): 0, .5, 1, 0;
    # halves: .5, .5, .5, 0; over the best (.5): 1, 1, 1, 0.
    assert fused.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert float(SEMANTIC_FLOOR) == np.float32(0.2)
    lexical_only = hybrid_relevance(lexical, cosine, np.float32(1.0))
    assert lexical_only.tolist() == [1.0, 0.5, 0.0, 0.0]
    semantic_only = hybrid_relevance(lexical, cosine, np.float32(0.0))
    np.testing.assert_allclose(semantic_only, [0.0, 0.5, 1.0, 0.0], rtol=1e-6)
    weighted = hybrid_relevance(lexical, cosine, np.float32(0.75))
    np.testing.assert_allclose(weighted, [1.0, 0.5 / 0.75, 0.25 / 0.75, 0.0], rtol=1e-6)
    unrelated = np.full(2, 0.1, np.float32)  # every cosine under the floor
    nothing = hybrid_relevance(np.zeros(2, np.float32), unrelated, np.float32(0.5))
    assert nothing.tolist() == [0.0, 0.0]


def test_a_query_retrieves_by_meaning_where_no_term_matches() -> None:
    ranking = rank(search())
    assert ranking.parts is not None
    # BM25 alone finds only the mug; the text vectors find the shoes near "sneakers".
    # Cosines .8, .96, 0, 1; above the floor over the best: .75, .95, 0, 1; fused
    # with the mug's lexical 1 at halves, over the best: .75, .95, 1, 1.
    relevance = dict(zip(ranking.item_ids, ranking.parts.query_relevance.tolist(), strict=True))
    np.testing.assert_allclose([relevance[i] for i in ITEMS], [0.75, 0.95, 1.0, 1.0], rtol=1e-6)
    # Taste orders within: the sandal's bias (.9) lifts it over the racer's (.2).
    assert ranking.item_ids == ["sandal", "racer", "mug", "runner"]
    by_item = dict(zip(ranking.item_ids, ranking.parts.source.tolist(), strict=True))
    assert by_item["mug"] == LEXICAL and by_item["racer"] == SEMANTIC
    semantic = dict(zip(ranking.item_ids, ranking.parts.semantic.tolist(), strict=True))
    np.testing.assert_allclose(
        [semantic[i] for i in ITEMS], [0.8, 0.96, 0.0, 1.0], rtol=1e-6
    )  # each item's text . the query's
    assert SOURCES[SEMANTIC] == "semantic"


def test_bm25_alone_by_setting_or_without_text_vectors_never_runs_the_model() -> None:
    for share, text in ((1.0, TEXT), (0.5, None)):
        encoder = FakeEncoder()
        retrieval = Retrieval(
            Held(catalogue(text)),
            encoder=QueryEncoder(encoder, 8),
            lexical_share=share,  # type: ignore[arg-type]
        )
        pipeline = build_pipeline(FakeItems(ITEMS), None, retrieval=retrieval)
        ranking = pipeline.run(search(), user([1.0, 0.0], bias=1.0))
        assert ranking.item_ids == ["mug"]  # the one term match
        assert encoder.calls == []


def test_without_a_query_the_encoder_costs_nothing() -> None:
    encoder = FakeEncoder()
    retrieval = Retrieval(Held(catalogue()), encoder=QueryEncoder(encoder, 8))  # type: ignore[arg-type]
    retrieval = replace(retrieval, lexical_share=0.5)
    pipeline = build_pipeline(FakeItems(ITEMS), None, retrieval=retrieval)
    for query in (search(terms=(), text=""), search(terms=(), text="the of !!! 👟")):
        pipeline.run(query, user([1.0, 0.0], bias=1.0))
    assert encoder.calls == []


def test_given_candidates_are_scored_by_both_relevances() -> None:
    ranking = rank(search(candidates=["mug", "sandal", "runner"], size=0))
    assert ranking.parts is not None
    assert ranking.item_ids == ["sandal", "mug", "runner"]
    # mug: lexical 1, semantic 0 -> .5; sandal: 0 and (.96 - .2)/(.96 - .2) = 1 -> .5;
    # runner: 0 and (.8 - .2)/.76 -> .3947...; over the best (.5).
    relevance = dict(zip(ranking.item_ids, ranking.parts.query_relevance.tolist(), strict=True))
    np.testing.assert_allclose(
        [relevance["mug"], relevance["sandal"], relevance["runner"]],
        [1.0, 1.0, 0.6 / 0.76],
        rtol=1e-5,
    )


def test_the_query_cache_keeps_the_most_recent_and_spells_a_query_one_way() -> None:
    fake = FakeEncoder()
    cache = QueryEncoder(fake, capacity=2)  # type: ignore[arg-type]
    first = cache.encode("Running  Shoes")
    assert cache.encode("running shoes ") is first  # one key: lowercased, spaces collapsed
    cache.encode("earbuds")
    cache.encode("running shoes")  # a hit: now the most recent
    cache.encode("couches")  # evicts "earbuds", the least recent
    assert (cache.hits, cache.misses, len(cache)) == (2, 3, 2)
    cache.encode("earbuds")
    assert fake.calls == [["running shoes"], ["earbuds"], ["couches"], ["earbuds"]]
    assert not first.flags.writeable  # shared by every request: nobody may change it
    uncached = QueryEncoder(fake, capacity=0)  # type: ignore[arg-type]
    uncached.encode("x")
    uncached.encode("x")
    assert (uncached.misses, len(uncached)) == (2, 0)
