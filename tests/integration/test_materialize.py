"""The bulk materializer against Feast's own, on real SQLite, Redis and Redis Cluster.

Each test materializes copies of the session workspace (same offline tables) into
fresh stores: once with Feast's stock `materialize`, once with shoprank's writer.
The stores must hold the same bytes, and Feast's get_online_features must read
back every value of the latest offline rows.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import names, store
from features.materialize import LatestRows, ViewTable
from features.online_layout import redis_client
from features.workspace import Stores, Workspace
from tests.services import redis_cluster, redis_server
from tests.support import copy_workspace

STORES = ("sqlite", "redis", "redis_cluster")
VIEWS = {
    names.USER_VIEW: (names.USER_KEY, names.USER_REFS),
    names.ITEM_VIEW: (names.ITEM_KEY, names.ITEM_REFS),
    names.USER_EMBEDDING_VIEW: (names.USER_KEY, names.USER_EMBEDDING_REFS),
    names.ITEM_EMBEDDING_VIEW: (names.ITEM_KEY, names.ITEM_EMBEDDING_REFS),
}


@pytest.fixture(scope="module")
def redis_urls(
    redis_binaries: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """This module's own Redis and Cluster: the tests flush them between writers."""
    directory = tmp_path_factory.mktemp("materialize-redis")
    with (
        redis_server(directory / "single") as single,
        redis_cluster(directory / "cluster") as cluster,
    ):
        yield {"redis": single, "redis_cluster": cluster}


def stores_for(kind: str, urls: dict[str, str]) -> Stores:
    return Stores() if kind == "sqlite" else Stores(online_store=kind, redis=urls[kind])


def snapshot(workspace: Workspace) -> dict[Any, Any]:
    """Every stored row, as bytes: SQLite's rows per table, or Redis's hashes per key."""
    stores = workspace.stores
    if stores.online_store == "sqlite":
        path = workspace.repo_dir / "data" / "online_store.db"
        with sqlite3.connect(path) as conn:
            tables = [
                t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            columns = "entity_key, feature_name, value, value_text, event_ts, created_ts"
            return {t: sorted(conn.execute(f'SELECT {columns} FROM "{t}"')) for t in tables}
    client = redis_client(stores.online_store, stores.redis)
    try:
        return {key: client.hgetall(key) for key in client.scan_iter(count=1000)}
    finally:
        client.close()


def flush(workspace: Workspace) -> None:
    if workspace.stores.online_store != "sqlite":
        client = redis_client(workspace.stores.online_store, workspace.stores.redis)
        client.flushall()
        client.close()


def materialized(
    source: Workspace, home: Path, stores: Stores, writer: str, **options: Any
) -> Workspace:
    workspace = copy_workspace(source, home, stores)
    store.apply(workspace)
    store.materialize(workspace, writer=writer, **options)
    return workspace


def intervals(workspace: Workspace) -> dict[str, list[tuple[datetime, datetime]]]:
    feast = store.open_store(workspace)
    # The batch views: the stream-only user_recent_items is never materialized.
    return {
        v.name: list(v.materialization_intervals)
        for v in feast.list_feature_views()
        if v.name in VIEWS
    }


def latest_offline(workspace: Workspace, view: str) -> pa.Table:
    """The view's newest snapshot file: every entity's latest row (rows accumulate)."""
    newest = sorted((workspace.offline_dir / view).glob("*.parquet"))[-1]
    return pq.read_table(newest)


def assert_feast_reads_offline(workspace: Workspace) -> None:
    """get_online_features of every entity equals its latest offline row, value for value."""
    feast = store.open_store(workspace)
    for view, (key, refs) in VIEWS.items():
        offline = latest_offline(workspace, view)
        ids = offline[key].to_pylist()
        read = feast.get_online_features(features=list(refs), entity_rows=[{key: i} for i in ids])
        served = read.to_dict()
        assert served[key] == ids
        for ref in refs:
            feature = ref.split(":")[1]
            expected = offline[feature].to_pylist()
            got = served[feature]
            if isinstance(expected[0], list):
                for e, g in zip(expected, got, strict=True):
                    np.testing.assert_array_equal(
                        np.asarray(g, np.float32), np.asarray(e, np.float32)
                    )
            else:
                np.testing.assert_array_equal(
                    np.asarray(got, np.float32), np.asarray(expected, np.float32)
                )


@pytest.mark.parametrize("kind", STORES)
def test_the_bulk_writer_leaves_the_store_feast_leaves(
    kind: str, workspace: Workspace, redis_urls: dict[str, str], tmp_path: Path
) -> None:
    stores = stores_for(kind, redis_urls)
    theirs = materialized(workspace, tmp_path / "feast", stores, "feast")
    feast_rows, feast_intervals = snapshot(theirs), intervals(theirs)
    flush(theirs)
    ours = materialized(workspace, tmp_path / "ours", stores, "shoprank")
    try:
        rows = snapshot(ours)
        assert sum(len(v) for v in rows.values()) > 0
        assert rows == feast_rows
        assert intervals(ours) == feast_intervals
        assert all(len(found) == 1 for found in feast_intervals.values())
        assert_feast_reads_offline(ours)
        # Again over a full store: every stored row is as new, so none is rewritten.
        store.materialize(ours)
        assert snapshot(ours) == feast_rows
    finally:
        flush(ours)


def test_incremental_continues_where_the_last_run_ended(
    workspace: Workspace, tmp_path: Path
) -> None:
    whole = materialized(workspace, tmp_path / "whole", Stores(), "shoprank")
    times = sorted(p.stem for p in (workspace.offline_dir / names.USER_VIEW).glob("*.parquet"))
    middle = datetime.strptime(times[len(times) // 2], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    split = materialized(workspace, tmp_path / "split", Stores(), "shoprank", end=middle)
    before = intervals(split)
    store.materialize(split, incremental=True)
    assert snapshot(split) == snapshot(whole)
    for view, first in before.items():
        if not first:
            continue  # a view with no table (none here) is not materialized
        ((start, end),) = first
        assert end == middle
        assert intervals(split)[view] == [(start, middle), (middle, intervals(whole)[view][0][1])]


def test_a_killed_run_run_again_gives_the_same_store(workspace: Workspace, tmp_path: Path) -> None:
    whole = materialized(workspace, tmp_path / "whole", Stores(), "shoprank")
    killed = copy_workspace(workspace, tmp_path / "killed")
    store.apply(killed)
    database = killed.repo_dir / "data" / "online_store.db"
    command = [
        sys.executable,
        "-m",
        "server.cli",
        "features",
        "materialize",
        "--home",
        str(killed.home),
    ]
    # One entity per transaction, so the run is long enough to be killed inside.
    process = subprocess.Popen(
        [*command, "--batch-rows", "1"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    written = 0
    deadline = time.monotonic() + 120
    while written == 0 and time.monotonic() < deadline and process.poll() is None:
        with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as conn:
            table = f"shoprank_{names.USER_VIEW}"
            written = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert written > 0
    assert snapshot(killed) != snapshot(whole)
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    assert snapshot(killed) == snapshot(whole)


@pytest.mark.parametrize("mixed", [False, True], ids=["snapshots", "mixed times"])
def test_latest_rows_take_each_entitys_newest_row_in_the_range(tmp_path: Path, mixed: bool) -> None:
    day = datetime(2026, 3, 1, tzinfo=UTC)
    schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("score", pa.float32()),
        ]
    )

    def write(name: str, rows: list[tuple[str, datetime, float]], group: int) -> None:
        table = pa.Table.from_pylist(
            [dict(zip(schema.names, r, strict=True)) for r in rows], schema
        )
        pq.write_table(table, tmp_path / name, row_group_size=group)

    write("a.parquet", [("u1", day, 1.0), ("u2", day, 2.0), ("u3", day, 3.0)], 3)
    write(
        "b.parquet",
        [("u1", day + timedelta(days=1), 10.0), ("u2", day + timedelta(days=1), 20.0)],
        1,
    )
    write("c.parquet", [("u1", day + timedelta(days=5), 100.0)], 1)  # at the range's end: out
    write("d.parquet", [("u4", day - timedelta(days=1), 4.0)], 1)  # before its start: out
    write("e.parquet", [("u5", day, 5.0), ("u5", day, 6.0)], 2)  # twice at one time: the first
    expected = [("u1", 10.0), ("u2", 20.0), ("u3", 3.0), ("u5", 5.0)]
    if mixed:  # a row group of two times: the general pass, not the snapshots' shortcut
        write("f.parquet", [("u6", day, 6.0), ("u6", day + timedelta(days=2), 7.0)], 2)
        expected.append(("u6", 7.0))
    table = ViewTable("v", "user_id", tmp_path, ("score",), frozenset())
    latest = LatestRows(table, day, day + timedelta(days=5))
    rows = pa.concat_tables(latest.batches(batch_rows=2))
    assert latest.found == latest.expected == len(expected)
    found = sorted(zip(rows["user_id"].to_pylist(), rows["score"].to_pylist(), strict=True))
    assert found == expected


def test_columns_serialise_as_feasts_own_value_protos() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    from features.online_layout import EntityKeys, float_list_values, float_values

    def feast(values: list[Any], kind: ValueType) -> list[bytes]:
        column = pa.array(values).to_numpy(zero_copy_only=False)
        return [v.SerializeToString() for v in python_values_to_proto_values(column, kind)]

    scalars = [0.5, None, float("nan"), 0.0, -3.25, 1e-40, float("inf")]
    column = pa.array(scalars, pa.float32())
    assert float_values(column).to_pylist() == feast(column.to_pylist(), ValueType.FLOAT)
    assert float_values(column.slice(2)).to_pylist() == feast(
        column.to_pylist()[2:], ValueType.FLOAT
    )
    lists = [[1.0, 2.5], None, [], [float("nan")] * 40, [0.25] * 2]
    column = pa.array(lists, pa.list_(pa.float32()))
    expected = feast(
        [None if v is None else np.asarray(v, np.float32) for v in lists], ValueType.FLOAT_LIST
    )
    assert float_list_values(column).to_pylist() == expected
    assert float_list_values(column.slice(1)).to_pylist() == expected[1:]
    fixed = pa.array([[0.5] * 3, [1.5] * 3], pa.list_(pa.float32()))  # the one-reshape path
    assert float_list_values(fixed).to_pylist() == feast(
        [np.full(3, 0.5, np.float32), np.full(3, 1.5, np.float32)], ValueType.FLOAT_LIST
    )

    ids = ["user_000001", "", "ünïcödé 🛒", "x" * 300]
    keys = EntityKeys("user_id", 3)
    theirs = [
        serialize_entity_key(
            EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=i)]), 3
        )
        for i in ids
    ]
    assert keys.key_array(pa.array(ids)).to_pylist() == theirs
    assert keys.key_array(pa.array(ids).slice(1)).to_pylist() == theirs[1:]
