"""Scoring a served ranking and its baselines from one explained response."""

from __future__ import annotations

import math

import pytest

from server.clients.served_eval import Group, score_table
from server.proto.shoprank.v1 import ranking_pb2 as pb


def _item(item_id: str, rank: int, bias: float, heuristic: float, emb: float) -> pb.RankedItem:
    parts = pb.ScoreParts(bias=bias, heuristic_score=heuristic, embedding_score=emb)
    return pb.RankedItem(item_id=item_id, rank=rank, parts=parts)


def test_each_scorer_is_scored_from_its_own_order() -> None:
    # Sent order a, b, c; the positive is c.
    group = Group("u", ["a", "b", "c"], frozenset({"c"}))
    served = [  # the server put c first
        _item("c", 1, bias=0.1, heuristic=0.2, emb=0.5),
        _item("a", 2, bias=0.9, heuristic=0.3, emb=0.5),
        _item("b", 3, bias=0.5, heuristic=0.1, emb=0.1),
    ]
    table = score_table([group], [served])
    assert table["ranker (served)"] == {"hr@10": 1.0, "ndcg@10": 1.0, "users": 1.0}
    # popularity by bias: a, b, c -> the positive at rank 3
    assert table["popularity"]["ndcg@10"] == pytest.approx(1 / math.log2(4))
    # similarity x bias: a (0.3), c (0.2), b -> rank 2
    assert table["similarity x bias"]["ndcg@10"] == pytest.approx(1 / math.log2(3))
    # embeddings tie a and c at 0.5: the sent order puts a first -> rank 2
    assert table["embeddings"]["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_a_positive_outside_the_top_ten_is_a_miss() -> None:
    candidates = [f"i{n}" for n in range(12)]
    group = Group("u", candidates, frozenset({"i11"}))
    served = [_item(c, n + 1, 0.0, 0.0, 0.0) for n, c in enumerate(candidates)]
    table = score_table([group], [served])
    assert table["ranker (served)"]["hr@10"] == 0.0
    assert "embeddings" not in table  # no embedding scores were served
