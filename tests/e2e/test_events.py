"""LogEvents through a real server: the checks, idempotency, back-pressure, a log
that is down, and a Rank that changes once the stream worker applies an event."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from features import store
from features.workspace import Stores, Workspace
from server.config import Settings
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from server.stream_thread import StreamThread
from tests.services import RedisProcess
from tests.support import ServerThread, copy_workspace


def stamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


@pytest.fixture()
def home(workspace: Workspace, tmp_path: Path) -> Workspace:
    copy = copy_workspace(workspace, tmp_path / "home", Stores())
    store.apply(copy)
    store.materialize(copy)
    return copy


@contextmanager
def serving(settings: Settings) -> Iterator[pb_grpc.RankerStub]:
    server = ServerThread(settings)
    port = server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.RankerStub(channel)
    finally:
        server.stop()


def settings_for(home: Workspace, **more: object) -> Settings:
    return replace(Settings(home=home.home, port=0, max_id_length=64), **more)  # type: ignore[arg-type]


def items_of(home: Workspace) -> list[str]:
    ids: list[str] = pq.read_table(home.catalog_path)["item_id"].to_pylist()
    return ids


def test_each_event_is_checked_and_a_retry_writes_nothing_twice(home: Workspace) -> None:
    item = items_of(home)[0]
    now = stamp(datetime.now(UTC))
    good = pb.Event(event_id="e1", user_id="u1", item_id=item, type="view", timestamp=now)
    events = [
        good,
        pb.Event(
            event_id="e2",
            user_id="u1",
            item_id=item,
            type="search",
            timestamp=now,
            query="running shoes 👟",
        ),
        pb.Event(event_id="", user_id="u1", item_id=item, type="view", timestamp=now),
        pb.Event(event_id="e3", user_id="", item_id=item, type="view", timestamp=now),
        pb.Event(event_id="e4", user_id="u1", item_id="no-such-item", type="view", timestamp=now),
        pb.Event(event_id="e5", user_id="u1", item_id=item, type="click", timestamp=now),
        pb.Event(event_id="e6", user_id="u1", item_id=item, type="view"),
        pb.Event(
            event_id="e7",
            user_id="u1",
            item_id=item,
            type="view",
            timestamp=stamp(datetime.now(UTC) + timedelta(days=3)),
        ),
        pb.Event(event_id="e8" * 40, user_id="u1", item_id=item, type="view", timestamp=now),
        pb.Event(
            event_id="e9",
            user_id="u1",
            item_id=item,
            type="search",
            timestamp=now,
            query="q" * 1025,
        ),
        good,  # the same id twice in one call
    ]
    with serving(settings_for(home)) as stub:
        answer = stub.LogEvents(pb.LogEventsRequest(events=events))
        assert (answer.accepted, answer.duplicates) == (2, 1)
        assert [(r.index, r.event_id, r.reason) for r in answer.rejected] == [
            (2, "", "null or empty event_id"),
            (3, "e3", "null or empty user_id"),
            (4, "e4", "item not in catalog"),
            (5, "e5", "unknown event_type"),
            (6, "e6", "timestamp missing or out of range"),
            (7, "e7", "timestamp missing or out of range"),
            (8, "e8" * 40, "an id over 64 characters"),
            (9, "e9", "query over 1024 characters"),
        ]
        retry = stub.LogEvents(pb.LogEventsRequest(events=events[:2]))
        assert (retry.accepted, retry.duplicates, len(retry.rejected)) == (0, 2, 0)
        for request, message in (
            (pb.LogEventsRequest(), "events is empty; send at least one event"),
            (pb.LogEventsRequest(events=[good] * 10_001), "10001 events; the limit is 10000"),
        ):
            with pytest.raises(grpc.RpcError) as failed:
                stub.LogEvents(request)
            assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in (failed.value.details() or "")
    from features.event_log import open_event_log

    delivery = open_event_log(home).read(10, 0.01)
    assert delivery is not None
    assert delivery.events["event_id"].to_pylist() == ["e1", "e2"]
    assert delivery.events["query"].to_pylist() == [None, "running shoes 👟"]


def test_a_full_log_sheds_with_resource_exhausted(home: Workspace) -> None:
    item = items_of(home)[0]
    now = stamp(datetime.now(UTC))
    with serving(settings_for(home, max_event_backlog=3)) as stub:
        batch = [
            pb.Event(event_id=f"b{k}", user_id="u", item_id=item, type="view", timestamp=now)
            for k in range(3)
        ]
        assert stub.LogEvents(pb.LogEventsRequest(events=batch)).accepted == 3
        with pytest.raises(grpc.RpcError) as failed:
            stub.LogEvents(
                pb.LogEventsRequest(
                    events=[
                        pb.Event(
                            event_id="b3", user_id="u", item_id=item, type="view", timestamp=now
                        )
                    ]
                )
            )
        assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "not applied" in (failed.value.details() or "")


def test_a_log_that_is_down_answers_unavailable(home: Workspace, tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    item = items_of(home)[0]
    event = pb.Event(
        event_id="r1", user_id="u", item_id=item, type="view", timestamp=stamp(datetime.now(UTC))
    )
    try:
        with serving(settings_for(home, event_log="redis", redis=redis.url)) as stub:
            assert stub.LogEvents(pb.LogEventsRequest(events=[event])).accepted == 1
            redis.kill()
            with pytest.raises(grpc.RpcError) as failed:
                stub.LogEvents(pb.LogEventsRequest(events=[event]))
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "event log" in (failed.value.details() or "")
    finally:
        redis.stop()


def test_a_rank_changes_once_its_users_events_are_applied(home: Workspace) -> None:
    settings = settings_for(home)
    user = pq.read_table(home.events_path, columns=["user_id"])["user_id"][0].as_py()
    candidates = items_of(home)[:30]
    stream = StreamThread(settings)
    stream.start()
    try:
        with serving(settings) as stub:

            def ranking() -> list[tuple[str, float]]:
                pages = stub.Rank(
                    pb.RankRequest(user_id=user, candidate_item_ids=candidates, explain=True)
                )
                return [(i.item_id, round(i.parts.similarity, 6)) for p in pages for i in p.items]

            before = ranking()
            now = datetime.now(UTC)
            bought = [i for i, _ in before][-1]  # the item it ranks last
            events = [
                pb.Event(
                    event_id=f"p{k}",
                    user_id=user,
                    item_id=bought,
                    type="purchase",
                    timestamp=stamp(now + timedelta(milliseconds=k)),
                )
                for k in range(20)
            ]
            sent = time.monotonic()
            assert stub.LogEvents(pb.LogEventsRequest(events=events)).accepted == 20
            after = before
            while after == before and time.monotonic() - sent < 60:
                time.sleep(0.02)
                after = ranking()
            assert after != before
            similarity = dict(after)
            assert similarity[bought] > dict(before)[bought]
    finally:
        stream.stop()
