"""One suite for every FeatureSource (server/sources/port.py): Feast's SQLite,
Redis and Redis Cluster stores read directly, and the item cache over SQLite.
Each is held to the port's contract and equal to Feast's own get_online_features."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from redis.cluster import RedisCluster

from features.online_layout import redis_client
from features.rows import ItemRows
from features.workspace import Stores, Workspace
from server.sources.cache_refresh import CachedFeatures
from server.sources.feast_provider import FeastFeatures
from server.sources.item_cache import ItemFeatureCache
from server.sources.port import FeatureSource
from tests.integration.test_user_reads import assert_same_user

ITEMS = ["item_000005", "no-such-item", "item_000000", "item_000199", "item_000005"]
USERS = ["user_000001", "user_000002", "no-such-user", "user_000299"]


class CountingReader:
    """The item cache's reader, counting the batched reads it makes of the store."""

    def __init__(self, feast: FeastFeatures) -> None:
        self._feast = feast
        self.reads = 0

    def __call__(self, ids: Sequence[str]) -> ItemRows:
        self.reads += 1
        return self._feast.items(ids)


def feast_over(workspace: Workspace) -> FeastFeatures:
    feast = FeastFeatures(workspace)
    feast.load()
    feast.enable_embeddings()
    return feast


@dataclass(frozen=True)
class Case:
    kind: str
    features: FeatureSource
    feast: FeastFeatures  # over the same store, for the SDK's reads
    stores: Stores


@pytest.fixture(scope="module", params=["sqlite", "redis", "redis_cluster", "cache"])
def case(request: pytest.FixtureRequest, workspace: Workspace) -> Case:
    if request.param in ("redis", "redis_cluster"):
        stores, copy = request.getfixturevalue("on_redis_" + request.param)
        feast = feast_over(copy)
        return Case(request.param, feast, feast, stores)
    feast = feast_over(workspace)
    if request.param == "sqlite":
        return Case("sqlite", feast, feast, workspace.stores)
    cache = ItemFeatureCache(feast.items, capacity=1000)
    cache.warm([f"item_{i:06d}" for i in range(200)])
    return Case("cache", CachedFeatures(feast, cache), feast, workspace.stores)


def assert_same_items(got: ItemRows, sdk: ItemRows) -> None:
    assert got.known.tolist() == sdk.known.tolist()
    for field in ("vectors", "bias", "conversion", "price", "timestamp", "embeddings"):
        np.testing.assert_array_equal(getattr(got, field), getattr(sdk, field), err_msg=field)


def test_items_come_back_in_order_with_unknown_ids_marked_never_dropped(case: Case) -> None:
    rows = case.features.items(ITEMS)
    assert len(rows) == len(ITEMS)
    assert rows.known.tolist() == [True, False, True, True, True]
    assert rows.vectors[1].tolist() == [0.0] * rows.vectors.shape[1]
    assert (rows.bias[1], rows.timestamp[1]) == (0.0, 0.0)
    np.testing.assert_array_equal(rows.vectors[0], rows.vectors[4])


def test_items_equal_the_sdks_read(case: Case) -> None:
    assert_same_items(case.features.items(ITEMS), case.feast.items_via_sdk(ITEMS))


def test_users_equal_the_sdks_read(case: Case) -> None:
    for user_id in USERS:
        row = asyncio.run(case.features.user(user_id))
        assert row.known == (user_id != "no-such-user")
        assert_same_user(row, case.feast.user_via_sdk(user_id))


def test_the_cache_reads_the_store_only_for_its_misses_in_one_batch(
    workspace: Workspace,
) -> None:
    reader = CountingReader(feast_over(workspace))
    cache = ItemFeatureCache(reader, capacity=1000)
    cache.warm([f"item_{i:06d}" for i in range(200)])
    before = reader.reads
    cache.rows(ITEMS[:1] + ITEMS[2:])  # all cached
    assert reader.reads == before
    cache.rows(["never-seen-1", "item_000003", "never-seen-2"])
    assert reader.reads == before + 1


def test_redis_is_read_once_per_view_never_once_more_per_id(
    on_redis: tuple[Stores, Workspace],
) -> None:
    stores, copy = on_redis
    features = feast_over(copy)
    client = redis_client(stores.online_store, stores.redis)
    before = hmget_calls(client)
    asyncio.run(features.user("user_000001"))
    after_user = hmget_calls(client)
    features.items(ITEMS)
    # The user: one HMGET for all user views. Items: an HMGET per id per item view
    # (features, embeddings), pipelined by Feast into one round trip per view.
    assert after_user - before == 1
    assert hmget_calls(client) - after_user == 2 * len(ITEMS)


def hmget_calls(client: Any) -> int:
    """HMGET calls served, summed over every node of a cluster."""
    if isinstance(client, RedisCluster):
        stats = client.info("commandstats", target_nodes=RedisCluster.ALL_NODES)
        nodes = list(stats.values())
    else:
        nodes = [client.info("commandstats")]
    return sum(int(node.get("cmdstat_hmget", {}).get("calls", 0)) for node in nodes)
