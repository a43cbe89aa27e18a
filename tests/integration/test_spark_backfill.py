"""The Spark backfill against the local one, and Feast's Spark offline store against
its DuckDB one, on the same small data set: real PySpark in local mode, on Java 17."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import store
from features.offline import backfill
from features.schema import CATALOG_SCHEMA, EVENTS_SCHEMA
from features.spark_backfill import backfill_spark
from features.synthetic import SyntheticSpec, prepare
from features.workspace import Stores, Workspace
from training.dataset import entity_rows, historical_features

pytestmark = pytest.mark.slow

SPEC = SyntheticSpec(users=120, items=80, days=6, seed=5)
LOOSE_EVENTS = pa.schema([f.with_nullable(True) for f in EVENTS_SCHEMA])


def _dirty(workspace: Workspace) -> None:
    """One bad row of each kind the validation counts, among the good ones."""
    events = pq.read_table(workspace.events_path).cast(LOOSE_EVENTS)
    good = events.slice(0, 1).to_pylist()[0]
    bad = [
        {**good, "user_id": None},
        {**good, "user_id": ""},
        {**good, "item_id": ""},
        {**good, "event_type": "teleport"},
        {**good, "ts": datetime(1970, 1, 1, tzinfo=UTC)},
        {**good, "item_id": "no-such-item"},
        {**good, "item_id": "item_000003"},  # its catalog row has a negative price
    ]
    pq.write_table(
        pa.concat_tables([events, pa.Table.from_pylist(bad, LOOSE_EVENTS)]), workspace.events_path
    )
    catalog = pq.read_table(workspace.catalog_path)
    price = catalog["price"].to_pylist()
    price[3] = -1.0
    catalog = catalog.set_column(2, "price", pa.array(price, pa.float64()))
    pq.write_table(catalog.cast(CATALOG_SCHEMA), workspace.catalog_path)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Workspace]]:
    """(local, spark): one data set, backfilled by each engine."""
    root = tmp_path_factory.mktemp("engines")
    local = Workspace(root / "local")
    prepare(local, SPEC)
    _dirty(local)
    spark = Workspace(root / "spark", Stores(offline_store="spark"))
    shutil.copytree(local.data_dir, spark.data_dir)
    yield local, spark


def test_spark_writes_the_local_engines_snapshots(engines: tuple[Workspace, Workspace]) -> None:
    local, spark = engines
    ours = backfill(local)
    theirs = backfill_spark(spark)
    assert theirs.snapshots == ours.snapshots
    assert theirs.rows == ours.rows
    assert theirs.events == ours.events
    assert theirs.rejections.counts == ours.rejections.counts
    assert len(ours.rejections.counts) == 6  # every check saw its bad row
    assert spark.vocabulary_path.read_text() == local.vocabulary_path.read_text()
    for table, key in (("user_features", "user_id"), ("item_features", "item_id")):
        files = sorted(p.name for p in (local.offline_dir / table).glob("*.parquet"))
        assert files == sorted(p.name for p in (spark.offline_dir / table).glob("*.parquet"))
        assert len(files) == len(ours.snapshots)
        for name in files:
            a = pq.read_table(local.offline_dir / table / name).sort_by(key)
            b = pq.read_table(spark.offline_dir / table / name).sort_by(key)
            assert a.schema == b.schema
            for column in a.column_names:
                if column.endswith("_vector"):  # sums taken in another order
                    left = np.stack(a[column].to_numpy(zero_copy_only=False))
                    right = np.stack(b[column].to_numpy(zero_copy_only=False))
                    np.testing.assert_allclose(right, left, rtol=0, atol=1e-6)
                else:
                    assert b[column].to_pylist() == a[column].to_pylist(), (table, name, column)


def test_the_spark_offline_store_gives_the_duckdb_training_set(
    engines: tuple[Workspace, Workspace],
) -> None:
    local, spark = engines
    if not any(local.user_features_path.glob("*.parquet")):
        backfill(local)
    shutil.rmtree(spark.offline_dir, ignore_errors=True)
    shutil.copytree(local.offline_dir, spark.offline_dir)
    rows = entity_rows(local, negatives=2, seed=3, max_positives=200)
    frames = []
    for workspace in (local, spark):
        store.apply(workspace)
        frame = historical_features(store.open_store(workspace), rows.copy())
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
        frames.append(
            frame.sort_values(["user_id", "item_id", "event_timestamp"]).reset_index(drop=True)
        )
    duckdb, on_spark = frames
    assert len(duckdb) == len(rows)
    assert duckdb["user_bias"].notna().sum() > len(rows) / 2  # most rows found a snapshot
    assert sorted(on_spark.columns) == sorted(duckdb.columns)
    for column in duckdb.columns:
        left, right = duckdb[column].tolist(), on_spark[column].tolist()
        if column.endswith("_vector"):
            pairs = zip(left, right, strict=True)
            assert all(
                (a is None and b is None) or np.array_equal(np.asarray(a), np.asarray(b))
                for a, b in pairs
            ), column
        else:
            assert pd.Series(right).equals(pd.Series(left)) or right == left, column
