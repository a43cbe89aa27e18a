"""The item cache: LRU logic on a fake reader, and equality with Feast on a real store."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from features import store
from features.offline import snapshot_file, write_snapshot
from features.rows import ItemRows
from features.workspace import Workspace
from server.app import catalogue_ids
from server.sources.cache_refresh import CacheRefresher
from server.sources.feast_provider import FeastFeatures
from server.sources.item_cache import ItemFeatureCache


class CountingReader:
    """A fake store: item "k<n>" has bias n and vector [n, 1]; others are unknown."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, ids: Sequence[str]) -> ItemRows:
        self.calls.append(list(ids))
        n = np.array([float(i[1:]) if i.startswith("k") else 0.0 for i in ids], np.float32)
        known = np.array([i.startswith("k") for i in ids])
        vectors = np.stack([n, np.ones_like(n)], axis=1) * known[:, None]
        return ItemRows(vectors, n, n / 10, n / 100, known, np.where(known, 1000.0 + n, 0.0))


def test_hits_are_served_without_a_read_and_misses_in_one_batch() -> None:
    reader = CountingReader()
    cache = ItemFeatureCache(reader, capacity=10)
    cache.warm(["k1", "k2"])
    rows = cache.rows(["k2", "k5", "k1", "k7"])
    assert reader.calls == [["k1", "k2"], ["k5", "k7"]]
    assert rows.bias.tolist() == [2.0, 5.0, 1.0, 7.0]
    assert rows.vectors.tolist() == [[2, 1], [5, 1], [1, 1], [7, 1]]
    assert rows.timestamp.tolist() == [1002.0, 1005.0, 1001.0, 1007.0]
    cache.rows(["k5", "k7"])
    assert len(reader.calls) == 2 and cache.misses == 2


def test_a_request_of_cached_ids_is_looked_up_in_one_call() -> None:
    cache = ItemFeatureCache(CountingReader(), capacity=10)
    cache.warm(["k1", "k2", "k3"])
    table = cache._table
    assert table.lookup_all(["k3", "k1"]).tolist() == [2, 0]
    assert table.lookup_all(["k2"]).tolist() == [1]
    assert table.lookup_all(["k2", "k9"]) is None  # one miss: the caller reads it
    assert table.lookup_all(["k9"]) is None
    assert table.lookup(["k2", "k9"]).tolist() == [1, -1]


def test_unknown_items_are_cached_as_unknown() -> None:
    reader = CountingReader()
    cache = ItemFeatureCache(reader, capacity=10)
    for _ in range(3):
        rows = cache.rows(["ghost", "k3"])
    assert rows.known.tolist() == [False, True]
    assert rows.vectors.tolist() == [[0, 0], [3, 1]]
    assert reader.calls == [["ghost", "k3"]]


def test_cached_rows_answer_from_the_cache_alone_and_cache_no_miss() -> None:
    reader = CountingReader()
    cache = ItemFeatureCache(reader, capacity=10)
    cache.warm(["k1", "k2"])
    rows = cache.cached_rows(["k2", "k5", "k1"])  # the store is down: k5 is not read
    assert reader.calls == [["k1", "k2"]]
    assert rows.known.tolist() == [True, False, True]
    assert rows.bias.tolist() == [2.0, 0.0, 1.0]
    assert rows.vectors.tolist() == [[2, 1], [0, 0], [1, 1]]
    assert rows.vector_norms is not None and rows.vector_norms[1] == 0.0
    assert rows.timestamp.tolist() == [1002.0, 0.0, 1001.0]
    assert cache.misses == 1
    assert cache.rows(["k5"]).bias.tolist() == [5.0]  # back up: the miss is read, not remembered
    assert reader.calls[-1] == ["k5"]


def test_the_least_recently_used_item_is_evicted_at_capacity() -> None:
    reader = CountingReader()
    cache = ItemFeatureCache(reader, capacity=3)
    cache.rows(["k1"])
    cache.rows(["k2"])
    cache.rows(["k3"])
    cache.rows(["k1"])  # k2 is now the least recently used
    cache.rows(["k4"])
    assert sorted(cache.cached_ids()) == ["k1", "k3", "k4"]
    assert cache.rows(["k2", "k4"]).bias.tolist() == [2.0, 4.0]


def test_a_request_never_evicts_its_own_hits() -> None:
    reader = CountingReader()
    cache = ItemFeatureCache(reader, capacity=3)
    cache.rows(["k1", "k2"])
    rows = cache.rows(["k1", "k2", "k9"])
    assert rows.bias.tolist() == [1.0, 2.0, 9.0]
    assert sorted(cache.cached_ids()) == ["k1", "k2", "k9"]


def test_a_request_larger_than_the_cache_is_read_through() -> None:
    reader = CountingReader()
    cache = ItemFeatureCache(reader, capacity=2)
    assert cache.rows(["k1", "k2", "k3"]).bias.tolist() == [1.0, 2.0, 3.0]
    assert len(cache) == 0


def test_warm_holds_at_most_capacity_items() -> None:
    cache = ItemFeatureCache(CountingReader(), capacity=2)
    cache.warm(["k1", "k2", "k3"])
    assert cache.cached_ids() == ["k1", "k2"]
    assert cache.age_seconds() >= 0


# --- against a real Feast online store ------------------------------------------------


def _assert_rows_equal(a: ItemRows, b: ItemRows) -> None:
    for field in ("vectors", "bias", "conversion", "price", "known", "timestamp"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_the_cache_equals_get_online_features_value_for_value(workspace: Workspace) -> None:
    feast = FeastFeatures(workspace)
    feast.load()
    ids = catalogue_ids(workspace)()
    cache = ItemFeatureCache(feast.items, capacity=10_000)
    cache.warm(ids)
    wanted = [*ids[::-1], "not-in-store"]
    _assert_rows_equal(cache.rows(wanted), feast.items_via_sdk(wanted))


@pytest.fixture
def copied(workspace: Workspace, tmp_path: Path) -> Workspace:
    shutil.copytree(workspace.home, tmp_path / "home")
    copy = Workspace(tmp_path / "home")
    store.apply(copy)  # anchor the copy's sources at its own folder
    return copy


def test_a_materialization_reloads_the_cache_with_the_new_values(copied: Workspace) -> None:
    feast = FeastFeatures(copied)
    feast.load()
    cache = ItemFeatureCache(feast.items, capacity=10_000)
    refresher = CacheRefresher(feast, cache, 60.0, catalogue_ids(copied))
    refresher.load()
    assert not refresher.check()  # nothing new yet
    newest = sorted(copied.item_features_path.glob("*.parquet"))[-1]
    table = pq.read_table(newest)
    later = table["event_timestamp"][0].as_py() + timedelta(hours=1)
    table = table.set_column(3, "item_bias", pc.multiply(table["item_bias"], 0.5))
    table = table.set_column(
        1, "event_timestamp", pc.add(table["event_timestamp"], timedelta(hours=1))
    )
    write_snapshot(table, snapshot_file(copied.item_features_path, later))
    store.materialize(copied, later, later + timedelta(seconds=1))
    ids = catalogue_ids(copied)()
    before = cache.rows(ids)
    assert refresher.check()
    after = cache.rows(ids)
    _assert_rows_equal(after, feast.items_via_sdk(ids))
    np.testing.assert_allclose(after.bias, before.bias * 0.5, rtol=1e-6)
    assert (after.timestamp == before.timestamp + 3600).all()
    assert 0 <= cache.age_seconds() < 60
