"""The event logs on real SQLite, Redis and Redis Cluster: dedup, bound, delivery."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from features.event_log import (
    LOG_SCHEMA,
    EventLog,
    EventLogFull,
    EventLogUnavailable,
    RedisStreamLog,
    SqliteEventLog,
)
from features.online_layout import redis_client
from tests.services import RedisProcess

T = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def batch(ids: list[str], query: str | None = None) -> pa.Table:
    return pa.table(
        {
            "event_id": ids,
            "user_id": [f"u-{i}" for i in ids],
            "item_id": ["item é 🛒"] * len(ids),
            "event_type": ["search" if query else "view"] * len(ids),
            "ts": pa.array([T + timedelta(seconds=k) for k in range(len(ids))]),
            "query": [query] * len(ids),
        }
    ).cast(LOG_SCHEMA)


Opener = Callable[[], EventLog]


@pytest.fixture(params=["local", "redis", "redis_cluster"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    if request.param == "local":
        yield lambda: SqliteEventLog(tmp_path / "events.sqlite")
        return
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "cluster_url")
    stream = f"{{shoprank:events:{tmp_path.name}}}"  # its own stream per test
    yield lambda: RedisStreamLog(lambda: redis_client(request.param, url), stream=stream)


def test_ids_are_written_once_and_delivered_in_order(opener: Opener) -> None:
    log = opener()
    assert log.append(batch(["a", "b", "a"]), 100) == [True, True, False]
    assert log.append(batch(["b", "c"], query="running shoes"), 100) == [False, True]
    assert log.backlog() == 3
    delivery = log.read(10, 0.01)
    assert delivery is not None
    assert delivery.events.to_pydict() == {
        "event_id": ["a", "b", "c"],
        "user_id": ["u-a", "u-b", "u-c"],
        "item_id": ["item é 🛒"] * 3,
        "event_type": ["view", "view", "search"],
        "ts": [T, T + timedelta(seconds=1), T + timedelta(seconds=1)],
        "query": [None, None, "running shoes"],
    }
    assert delivery.positions == sorted(delivery.positions)
    log.ack(delivery)
    assert log.backlog() == 0
    assert log.read(10, 0.01) is None
    log.close()


def test_what_was_not_acknowledged_comes_again(opener: Opener) -> None:
    log = opener()
    log.append(batch(["a", "b", "c"]), 100)
    first = log.read(2, 0.01)
    assert first is not None and first.events["event_id"].to_pylist() == ["a", "b"]
    log.redeliver()  # a failed batch
    again = log.read(2, 0.01)
    assert again is not None and again.positions == first.positions
    log.ack(again)
    pending = log.read(2, 0.01)  # "c", delivered, then the worker dies
    assert pending is not None and log.first_pending() == pending.first > again.last
    log.close()
    restarted = opener()
    after = restarted.read(10, 0.01)
    assert after is not None and after.events["event_id"].to_pylist() == ["c"]
    restarted.ack(after)
    assert restarted.first_pending() is None
    restarted.close()


def test_a_full_log_refuses_the_whole_batch(opener: Opener) -> None:
    log = opener()
    log.append(batch(["a", "b"]), 2)
    with pytest.raises(EventLogFull, match="holds 2 events"):
        log.append(batch(["c"]), 2)
    assert log.backlog() == 2
    delivery = log.read(10, 0.01)
    assert delivery is not None
    log.ack(delivery)
    assert log.append(batch(["c"]), 2) == [True]  # room again; "c" was never written
    log.close()


def test_redis_down_is_unavailable_and_writes_nothing(tmp_path: Path, redis_binaries: None) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        log = RedisStreamLog(lambda: redis_client("redis", redis.url))
        log.append(batch(["a"]), 10)
        redis.save()
        redis.kill()
        with pytest.raises(EventLogUnavailable, match="Redis stream"):
            log.append(batch(["b"]), 10)
        redis.start()
        assert log.append(batch(["a", "b"]), 10) == [False, True]
        assert log.backlog() == 2
    finally:
        redis.stop()
