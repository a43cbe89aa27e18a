"""Semantic search through a real server: the exported all-MiniLM-L6-v2 in onnxruntime,
item text vectors published through Feast (SQLite), over the synthetic catalogue's
taxonomy, whose shoppers search with synonyms the items' text never says."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import pytest

from features import names
from features.model_inputs import QUERY_INPUTS
from features.relevance import DEFAULT_LEXICAL_SHARE
from features.synthetic import SyntheticSpec
from features.workspace import Workspace
from server.app import Loaded, load
from server.config import Settings
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from server.ranking.batch import RankQuery
from server.retrieval.query_encoder import QueryEncoder
from tests.support import ServerThread, build_workspace, small_training
from training import registry
from training.search_rows import search_rows

SPEC = SyntheticSpec(users=200, items=400, days=10, seed=5)


@pytest.fixture(scope="module")
def searchable(tmp_path_factory: pytest.TempPathFactory, text_encoder: Path) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("semantic"), SPEC, False, text_encoder)


@pytest.fixture(scope="module")
def loaded(searchable: Workspace) -> Loaded:
    return load(Settings(home=searchable.home, port=0))


@pytest.fixture(scope="module")
def stub(searchable: Workspace, loaded: Loaded) -> Iterator[pb_grpc.RankerStub]:
    server = ServerThread(Settings(home=searchable.home, port=0), loaded)
    port = server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.RankerStub(channel)
    server.stop()


def ranked(stub: pb_grpc.RankerStub, **fields: object) -> list[pb.RankedItem]:
    pages = stub.Rank(pb.RankRequest(user_id="user_000003", explain=True, **fields), timeout=30)
    return [item for page in pages for item in page.items]


def categories(workspace: Workspace) -> dict[str, str]:
    table = pq.read_table(workspace.catalog_path, columns=["item_id", "attributes"])
    return {
        item: attributes.split("|")[0]
        for item, attributes in zip(
            table["item_id"].to_pylist(), table["attributes"].to_pylist(), strict=True
        )
    }


def test_the_backfill_publishes_every_items_text_vector(searchable: Workspace) -> None:
    (snapshot,) = searchable.item_text_path.glob("*.parquet")
    table = pq.read_table(snapshot)
    assert table.num_rows == SPEC.items
    assert {len(v) for v in table[names.TEXT_VECTOR].to_pylist()} == {384}


@pytest.mark.parametrize(
    ("query", "category"),
    [("sneakers", "running_shoes"), ("earbuds", "headphones"), ("couches", "sofas")],
)
def test_a_synonym_no_item_contains_finds_its_category(
    stub: pb_grpc.RankerStub, searchable: Workspace, query: str, category: str
) -> None:
    of = categories(searchable)
    assert not any(query in text for text in of.values())  # no item says it
    items = ranked(stub, query=query, top_k=5)
    assert [of[item.item_id] for item in items] == [f"category={category}"] * 5
    assert {item.parts.retrieval_source for item in items} == {"semantic"}
    assert all(item.parts.bm25 == 0.0 < 0.3 < item.parts.semantic_similarity for item in items)
    assert items[0].parts.query_relevance == pytest.approx(1.0)


def test_given_candidates_are_ordered_by_meaning_too(
    stub: pb_grpc.RankerStub, searchable: Workspace
) -> None:
    of = categories(searchable)
    shoes = [item for item, c in of.items() if c == "category=running_shoes"][:3]
    others = [item for item, c in of.items() if c == "category=mugs"][:3]
    items = ranked(stub, query="trainers", candidate_item_ids=others + shoes)
    assert {item.item_id for item in items[:3]} == set(shoes)
    assert {item.parts.retrieval_source for item in items} == {"given"}


@pytest.mark.parametrize("query", ["", "   ", "the of and", "!!! ...", "👟🏃"])
def test_a_query_without_terms_is_no_query(
    stub: pb_grpc.RankerStub, loaded: Loaded, query: str
) -> None:
    encoder = loaded.retrieval.encoder
    assert isinstance(encoder, QueryEncoder)
    plain = ranked(stub, top_k=10)
    before = (encoder.hits, encoder.misses)
    asked = ranked(stub, query=query, top_k=10)
    assert (encoder.hits, encoder.misses) == before  # the language model never ran
    assert [i.item_id for i in asked] == [i.item_id for i in plain]
    assert {i.parts.semantic_similarity for i in asked} == {0.0}
    assert {i.parts.retrieval_source for i in asked} <= {"interest", "embedding", "popular"}


def test_a_10_kb_query_is_refused_naming_the_limit(stub: pb_grpc.RankerStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        ranked(stub, query="sneakers " * 1200)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "query is 10800 bytes; the limit is 1024 bytes"


def test_the_served_query_parts_are_the_training_rows(
    stub: pb_grpc.RankerStub, searchable: Workspace
) -> None:
    rows = search_rows(searchable, DEFAULT_LEXICAL_SHARE, candidates=10, max_events=5, seed=3)
    assert rows is not None and set(rows["has_query"]) == {1.0}
    for (user, _, query), event in rows.groupby(["user_id", "event_timestamp", "query"]):
        assert 1.0 in set(event["label"])  # the session's purchase or cart is among them
        request = pb.RankRequest(
            user_id=user, query=query, candidate_item_ids=list(event["item_id"]), explain=True
        )
        served = {
            item.item_id: item.parts.query_relevance
            for page in stub.Rank(request, timeout=30)
            for item in page.items
        }
        trained = dict(zip(event["item_id"], event["query_relevance"], strict=True))
        assert served.keys() == trained.keys()
        for item, value in trained.items():
            assert served[item] == pytest.approx(value, abs=1e-5), (query, item)


def test_a_ranker_trained_on_the_searches_takes_the_query(searchable: Workspace) -> None:
    # Last in this module: the model it registers becomes current for the workspace.
    from training.train import train

    result = train(searchable, small_training(), lambda _: None, force=True)
    metadata = registry.load(searchable.models_dir, result.version).metadata
    assert metadata["query_inputs"] is True
    assert metadata["input_columns"][-4:] == list(QUERY_INPUTS)
    loaded = load(Settings(home=searchable.home, port=0))
    assert loaded.pipeline.version == result.version
    user = asyncio.run(loaded.features.user("user_000003"))
    query = RankQuery("user_000003", [], 5, True, ("sneakers",), "sneakers", retrieval_size=50)
    ranking = loaded.pipeline.run(query, user)
    assert len(ranking.item_ids) == 5 and ranking.parts is not None
    assert set(ranking.parts.query_relevance.tolist()) != {1.0}  # the query was read
