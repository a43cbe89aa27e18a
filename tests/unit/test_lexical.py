"""BM25 and the query's terms, on hand-made catalogues, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from features.lexical import LexicalIndex
from features.text import category_of, item_text, terms
from server.config import Settings
from server.errors import InvalidRequest
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.stages.query_match import best_matches
from server.transport.requests import to_query

TEXTS = ["Star Wars", "star trek, STAR", "Lone Star State", ""]


def lucene(tf: int, df: int, dl: int, n: int = 4, avgdl: float = 2.0) -> float:
    """Lucene's BM25 term score, k1 1.2 and b 0.75, written out by hand."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))


def test_bm25_scores_are_lucenes_formula() -> None:
    index = LexicalIndex(TEXTS)  # terms per text: 2, 3, 3, 0; avgdl 2
    scores = index.scores(terms("star wars"))
    expected = [
        lucene(1, 3, 2) + lucene(1, 1, 2),  # "star wars": both terms once
        lucene(2, 3, 3),  # "star trek star": star twice
        lucene(1, 3, 3),
        0.0,
    ]
    assert scores.tolist() == pytest.approx(expected, rel=1e-6)
    assert scores[0] == pytest.approx(0.709385, rel=1e-5)


def test_top_returns_only_matches_best_first_and_leaves_out_excluded_rows() -> None:
    index = LexicalIndex(TEXTS)
    _, relevance = index.matched(["star"])  # one term: relevance is the BM25 itself
    rows = best_matches(relevance, 10)
    scores = relevance[rows]
    assert rows.tolist() == [1, 0, 2]  # the empty text never matches
    assert scores.tolist() == pytest.approx([lucene(2, 3, 3), lucene(1, 3, 2), lucene(1, 3, 3)])
    rows = best_matches(relevance, 10, exclude=np.array([1]))
    assert rows.tolist() == [0, 2]
    assert best_matches(index.matched(["nothing"])[1], 10).tolist() == []


def test_a_catalogue_without_a_single_term_matches_nothing() -> None:
    assert LexicalIndex(["", "!!!"]).scores(["star"]).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", []),
        ("   \t\n ", []),  # whitespace only
        ("the of and a", []),  # stop words only
        ("!!! ... ???", []),  # punctuation only
        ("🙂🚀", []),  # emoji are not words
        ("Café 🙂 STAR-wars", ["café", "star", "wars"]),  # Unicode words, lowercased
        ("Ünïcödé naïve 東京", ["ünïcödé", "naïve", "東京"]),
        ("star_wars", ["star", "wars"]),  # "_" splits as punctuation does
    ],
)
def test_query_terms(query: str, expected: list[str]) -> None:
    assert terms(query) == expected
    request = pb.RankRequest(user_id="u", candidate_item_ids=["a"], query=query)
    assert to_query(request, Settings()).terms == tuple(expected)


def test_a_10_kb_query_is_invalid_and_names_the_limit() -> None:
    request = pb.RankRequest(user_id="u", query="x" * 10_240)
    with pytest.raises(InvalidRequest, match=r"^query is 10240 bytes; the limit is 1024 bytes$"):
        to_query(request, Settings())


def test_the_query_limit_counts_bytes_not_characters() -> None:
    request = pb.RankRequest(user_id="u", query="é" * 600)  # 1,200 bytes in UTF-8
    with pytest.raises(InvalidRequest, match="query is 1200 bytes"):
        to_query(request, Settings())


def test_item_text_is_the_title_and_its_word_attributes() -> None:
    attributes = "category=running_shoes|brand=Acme|price_band=3|tag=t07|decade=1970s"
    assert item_text("Trail Runner", attributes) == "Trail Runner running shoes Acme t07"
    assert category_of(attributes) == "running_shoes"
    assert category_of("genre=Action|genre=Sci-Fi") == "Action"
    assert category_of("price_band=1") == ""
