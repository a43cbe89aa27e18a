"""Semantic search through a real server: the exported all-MiniLM-L6-v2 in onnxruntime,
item text vectors published through Feast (SQLite), over the synthetic catalogue's
taxonomy, whose shoppers search with synonyms the items' text never says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import pytest

from features import names
from features.synthetic import SyntheticSpec
from features.workspace import Workspace
from server.app import Loaded, load
from server.config import Settings
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from server.retrieval.query_encoder import QueryEncoder
from tests.support import ServerThread, build_workspace

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
