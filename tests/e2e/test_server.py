"""A real gRPC server on port 0 over a real workspace (Feast + SQLite + ONNX)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from features.model_inputs import assemble
from features.scoring import combined_bias, cosine_similarity
from features.workspace import Workspace
from server.config import Settings
from server.model_runtime import OnnxRanker
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from server.sources.feast_provider import FeastFeatures
from training import registry

Flag = pb.ScoreParts.Flag
USER = "user_000001"
ITEMS = [f"item_{i:06d}" for i in range(0, 40, 4)]  # 10 catalog items


def rank(channel: grpc.Channel, **fields: object) -> list[pb.RankResponse]:
    fields.setdefault("user_id", USER)
    fields.setdefault("candidate_item_ids", ITEMS)
    return list(pb_grpc.RankerStub(channel).Rank(pb.RankRequest(**fields), timeout=30))


def items_of(pages: list[pb.RankResponse]) -> list[pb.RankedItem]:
    return [item for page in pages for item in page.items]


def test_stream_is_ranked_best_first_in_pages_of_page_size(channel: grpc.Channel) -> None:
    pages = rank(channel, page_size=3)
    assert [len(p.items) for p in pages] == [3, 3, 3, 1]
    items = items_of(pages)
    assert [i.rank for i in items] == list(range(1, 11))
    scores = [i.score for i in items]
    assert scores == sorted(scores, reverse=True)
    assert sorted(i.item_id for i in items) == sorted(ITEMS)
    assert [p.model_version for p in pages] == ["0001", "", "", ""]


def test_scores_are_the_onnx_ranker_on_the_feast_features(
    channel: grpc.Channel, workspace: Workspace
) -> None:
    features = FeastFeatures(workspace)
    features.load()
    features.enable_embeddings()
    user, items = features.users([USER])[0], features.items(ITEMS)
    similarity = cosine_similarity(user.vector, items.vectors)
    bias = combined_bias(user.bias, items.bias)
    assert user.embedding is not None and items.embeddings is not None
    dot = np.einsum("ij,j->i", items.embeddings, user.embedding)
    embedded = (dot, cosine_similarity(user.embedding, items.embeddings))
    ranker = OnnxRanker.load(workspace.models_dir, "0001", threads=1)
    assert ranker.info.embeddings
    expected = ranker.score(
        assemble(
            similarity,
            bias,
            user.vector,
            user.bias,
            user.activity,
            items.vectors,
            items.bias,
            items.conversion,
            items.price,
            embedded,
        )
    )
    order = np.argsort(-expected, kind="stable")
    served = items_of(rank(channel, explain=True))
    assert [i.item_id for i in served] == [ITEMS[j] for j in order]
    assert [i.score for i in served] == expected[order].tolist()
    assert [i.parts.similarity for i in served] == similarity[order].tolist()
    assert [i.parts.bias for i in served] == bias[order].tolist()
    assert [i.parts.heuristic_score for i in served] == (similarity * bias)[order].tolist()
    assert [i.parts.embedding_score for i in served] == dot.astype(np.float32)[order].tolist()


def test_top_k_returns_the_best_k_and_is_capped_at_the_candidates(channel: grpc.Channel) -> None:
    everything = items_of(rank(channel))
    best4 = items_of(rank(channel, top_k=4))
    assert [i.item_id for i in best4] == [i.item_id for i in everything[:4]]
    assert len(items_of(rank(channel, top_k=1000))) == len(ITEMS)


def test_page_size_zero_uses_the_server_default(channel: grpc.Channel) -> None:
    assert [len(p.items) for p in rank(channel, page_size=0)] == [3, 3, 3, 1]
    assert [len(p.items) for p in rank(channel, page_size=100)] == [10]


def test_explain_fills_parts_only_when_asked(channel: grpc.Channel) -> None:
    plain = items_of(rank(channel))
    assert not any(i.HasField("parts") for i in plain)
    explained = items_of(rank(channel, explain=True))
    for item in explained:
        assert item.parts.model_score == item.score
        assert item.parts.user_feature_age_seconds > 0
        assert item.parts.item_feature_age_seconds > 0
        assert list(item.parts.flags) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user_id": ""}, "user_id is required"),
        ({"user_id": "u" * 65}, "user_id is 65 characters; the limit is 64"),
        ({"candidate_item_ids": [], "retrieval_size": 51}, "retrieval_size is 51; the limit is 50"),
        ({"query": "q" * 1025}, "query is 1025 bytes; the limit is 1024 bytes"),
        ({"mmr_lambda": 2.0}, "mmr_lambda is 2.0; it must be in [0, 1]"),
        ({"block_item_ids": ["x" * 65]}, "block_item_ids[0] is 65 characters"),
        ({"candidate_item_ids": ["i"] * 51}, "51 candidate_item_ids; the limit is 50"),
        ({"candidate_item_ids": ["ok", ""]}, "candidate_item_ids[1] is empty"),
        ({"candidate_item_ids": ["x" * 65]}, "candidate_item_ids[0] is 65 characters"),
    ],
)
def test_malformed_requests_get_invalid_argument(
    channel: grpc.Channel, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        rank(channel, **fields)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


def test_an_unknown_user_is_ranked_by_bias_and_flagged(channel: grpc.Channel) -> None:
    items = items_of(rank(channel, user_id="someone-new", explain=True))
    assert [i.score for i in items] == sorted((i.parts.bias for i in items), reverse=True)
    assert all(list(i.parts.flags) == [Flag.COLD_START_USER] for i in items)
    assert all(i.parts.user_feature_age_seconds == -1 and i.parts.model_score == 0 for i in items)


def test_unknown_items_rank_last_in_request_order_with_score_zero(channel: grpc.Channel) -> None:
    candidates = ["ghost-b", ITEMS[0], "ghost-a", ITEMS[1]]
    items = items_of(rank(channel, candidate_item_ids=candidates, explain=True))
    assert [i.item_id for i in items[2:]] == ["ghost-b", "ghost-a"]
    assert [i.score for i in items[2:]] == [0.0, 0.0]
    assert all(list(i.parts.flags) == [Flag.UNKNOWN_ITEM] for i in items[2:])
    assert all(i.parts.item_feature_age_seconds == -1 for i in items[2:])
    assert {i.item_id for i in items[:2]} == {ITEMS[0], ITEMS[1]}


def test_duplicate_candidates_are_ranked_once(channel: grpc.Channel) -> None:
    items = items_of(rank(channel, candidate_item_ids=[ITEMS[0], ITEMS[1], ITEMS[0], ITEMS[0]]))
    assert sorted(i.item_id for i in items) == sorted([ITEMS[0], ITEMS[1]])
    assert [i.rank for i in items] == [1, 2]


def test_health_reports_serving(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "shoprank.v1.Ranker"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_ranker(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in response.list_services_response.service}
    assert {"shoprank.v1.Ranker", "grpc.health.v1.Health"} <= names


def test_the_registry_marks_the_served_version_current(workspace: Workspace) -> None:
    assert registry.current_version(workspace.models_dir) == "0001"
    (model,) = registry.versions(workspace.models_dir)
    assert model.current
    assert set(model.metadata["metrics"]) == {
        "popularity",
        "similarity x bias",
        "embeddings",
        "shoprank MF",
        "implicit ALS f=64 alpha=5",
        "ranker",
    }
    assert model.metadata["embedding_learner"] == "shoprank MF"  # no stack: MF, as before
    assert model.metadata["feature_service"] == "ranker_v2"
    assert model.metadata["parity_max_abs_error"] < 1e-5


def test_each_stage_of_a_call_is_timed_in_the_metrics(server_settings: Settings) -> None:
    import urllib.request
    from dataclasses import replace

    from server.app import load
    from server.processes import free_port
    from tests.support import ServerThread

    settings = replace(server_settings, metrics_port=free_port("127.0.0.1"))
    server = ServerThread(settings, load(settings))
    port = server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            rank(channel)
            rank(channel, explain=True)
        url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.stop()
    pipeline = server.running.loaded.pipeline if server.running else None
    assert pipeline is not None
    for stage in ("user_read", *pipeline.stage_names, "serialise", "total"):
        assert f'shoprank_rank_stage_seconds_count{{stage="{stage}"}} 2.0' in text
    assert 'stage="model_score"' in text  # the served model is a stage of its own
    assert 'shoprank_rank_requests_total{code="OK"} 2.0' in text
