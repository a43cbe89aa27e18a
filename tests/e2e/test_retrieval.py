"""Retrieval and the rules through the session's real server (Feast + SQLite + ONNX,
a trained model with embeddings) over the synthetic workspace."""

from __future__ import annotations

import grpc
import pyarrow.parquet as pq

from features.workspace import Workspace
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc


def ranked(
    channel: grpc.Channel, **fields: object
) -> tuple[list[pb.RankedItem], list[pb.RemovedItem]]:
    pages = list(pb_grpc.RankerStub(channel).Rank(pb.RankRequest(**fields), timeout=30))
    return [i for p in pages for i in p.items], [r for p in pages for r in p.removed]


def history(workspace: Workspace) -> dict[str, list[str]]:
    table = pq.read_table(workspace.user_history_path)
    return dict(
        zip(table["user_id"].to_pylist(), table["interacted_items"].to_pylist(), strict=True)
    )


def test_no_candidates_retrieves_a_ranked_list_without_the_users_purchases(
    channel: grpc.Channel, workspace: Workspace
) -> None:
    bought = history(workspace)
    buyer = max(bought, key=lambda user: len(bought[user]))
    items, removed = ranked(channel, user_id=buyer, top_k=20, explain=True)
    ids = [item.item_id for item in items]
    assert len(ids) == len(set(ids)) == 20
    assert not set(ids) & set(bought[buyer])
    assert removed == []  # retrieval leaves them out: nothing to remove
    assert {item.parts.retrieval_source for item in items} <= {"embedding", "interest"}
    assert [item.score for item in items] == sorted((item.score for item in items), reverse=True)
    # the same items, given back as candidates with exclusion on, are all removed
    again, removed = ranked(
        channel,
        user_id=buyer,
        candidate_item_ids=bought[buyer][:3] + ids[:2],
        exclude_interacted=True,
        explain=True,
    )
    assert [item.item_id for item in again] == ids[:2]
    assert [(r.item_id, r.rule) for r in removed] == [(i, "interacted") for i in bought[buyer][:3]]


def test_rules_through_the_server_are_reproducible_and_explained(channel: grpc.Channel) -> None:
    fields = {"user_id": "user_000001", "top_k": 10, "explain": True}
    plain, _ = ranked(channel, **fields)
    explored, _ = ranked(channel, **fields, exploration_temperature=0.05, seed=7)
    again, _ = ranked(channel, **fields, exploration_temperature=0.05, seed=7)
    assert [i.item_id for i in explored] == [i.item_id for i in again]
    assert any(i.parts.rule.startswith("exploration: from rank ") for i in explored)
    blocked, removed = ranked(channel, **fields, block_item_ids=[plain[0].item_id])
    assert plain[0].item_id not in [i.item_id for i in blocked]
    # retrieval does not skip blocked items: the filter removes them, and says so
    assert [(r.item_id, r.rule) for r in removed] == [(plain[0].item_id, "blocked")]
