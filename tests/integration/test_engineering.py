"""The feature formulas on a tiny hand-made event log, with hand-computed values.

Catalog (vocabulary sorted: brand=x, brand=y, category=a, category=b):
  i0 category=a|brand=x   raw [1/2, 0, 1/2, 0]  -> [0.707107, 0, 0.707107, 0]
  i1 category=a|brand=y   raw [0,   1, 1/2, 0]  -> [0, 0.894427, 0.447214, 0]
  i2 category=b|brand=x   raw [1/2, 0, 0,   1]  -> [0.447214, 0, 0, 0.894427]
Events before t: u0 views and buys i0; u1 views i0 and carts i1.
  |C_i0| = 2, |C_i1| = 1, |C_i2| = 0
  u0 = (1 + 3)/2 * i0                 -> [0.707107, 0, 0.707107, 0]
  u1 = 1/2 * i0 + 2/1 * i1            -> [0.160006, 0.809573, 0.564792, 0]
After t: u1 buys i2, u2 views i1 (must not leak into the snapshot at t).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.offline import backfill, load_catalog, snapshot_file
from features.prepare import write_dataset
from features.schema import CATALOG_SCHEMA, EVENTS_SCHEMA, USERS_SCHEMA
from features.workspace import Workspace

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SNAPSHOT = T0 + timedelta(days=1)


def _events(rows: list[tuple[str, str, str, int]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "user_id": u,
                "item_id": i,
                "event_type": e,
                "ts": T0 + timedelta(hours=h),
                "session_id": None,
                "query": None,
            }
            for u, i, e, h in rows
        ],
        schema=EVENTS_SCHEMA,
    )


@pytest.fixture
def tiny(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    catalog = pa.Table.from_pylist(
        [
            {"item_id": "i0", "title": None, "price": 10.0, "attributes": "category=a|brand=x"},
            {"item_id": "i1", "title": None, "price": None, "attributes": "category=a|brand=y"},
            {"item_id": "i2", "title": None, "price": 0.0, "attributes": "category=b|brand=x"},
        ],
        schema=CATALOG_SCHEMA,
    )
    users = pa.Table.from_pylist([], schema=USERS_SCHEMA)
    events = _events(
        [
            ("u0", "i0", "view", 1),
            ("u0", "i0", "purchase", 2),
            ("u1", "i0", "view", 3),
            ("u1", "i1", "cart", 4),
            ("u1", "i2", "purchase", 30),
            ("u2", "i1", "view", 31),
        ]
    )
    write_dataset(workspace, "tiny", catalog, users, [(events, events.slice(0, 0))], T0, {})
    return workspace


def test_item_vectors_are_inverse_frequency_weighted_and_unit_length(tiny: Workspace) -> None:
    catalog = load_catalog(tiny)
    assert catalog.vocabulary.tokens == ("brand=x", "brand=y", "category=a", "category=b")
    np.testing.assert_allclose(
        catalog.vectors,
        [[0.707107, 0, 0.707107, 0], [0, 0.894427, 0.447214, 0], [0.447214, 0, 0, 0.894427]],
        atol=1e-6,
    )


def _rows(directory: Path, t: datetime) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = pq.read_table(snapshot_file(directory, t)).to_pylist()
    return rows


def test_user_rows_at_a_snapshot_use_only_earlier_events(tiny: Workspace) -> None:
    backfill(tiny, [SNAPSHOT])
    rows = _rows(tiny.user_features_path, SNAPSHOT)
    assert [r["user_id"] for r in rows] == ["u0", "u1"]  # u2 acts only after the snapshot
    np.testing.assert_allclose(rows[0]["user_vector"], [0.707107, 0, 0.707107, 0], atol=1e-6)
    np.testing.assert_allclose(rows[1]["user_vector"], [0.160006, 0.809573, 0.564792, 0], atol=1e-6)
    # propensity: (conversions + 10 * 1/4) / (events + 10); u1's cart is no conversion
    assert [r["user_bias"] for r in rows] == pytest.approx([3.5 / 12, 2.5 / 12])
    assert [r["user_activity"] for r in rows] == pytest.approx([np.log1p(2)] * 2)
    assert {r["event_timestamp"] for r in rows} == {SNAPSHOT}


def test_item_rows_hold_smoothed_popularity_and_conversion(tiny: Workspace) -> None:
    backfill(tiny, [SNAPSHOT])
    rows = _rows(tiny.item_features_path, SNAPSHOT)
    # |C| = [2, 1, 0]: log(2 + |C|) / log(2 + 2)
    assert [r["item_bias"] for r in rows] == pytest.approx([1.0, np.log(3) / np.log(4), 0.5])
    # converting users, shrunk to the rate 1/3 with 10 pseudo-users
    assert [r["item_conversion"] for r in rows] == pytest.approx(
        [(1 + 10 / 3) / 12, (10 / 3) / 11, (10 / 3) / 10]
    )
    # log1p(price) scaled by the largest; a missing price is 0
    assert [r["item_price"] for r in rows] == pytest.approx([1.0, 0.0, 0.0])


def test_a_later_snapshot_sees_the_later_events(tiny: Workspace) -> None:
    later = T0 + timedelta(days=2)
    backfill(tiny, [SNAPSHOT, later])
    rows = _rows(tiny.user_features_path, later)
    assert [r["user_id"] for r in rows] == ["u0", "u1", "u2"]
    np.testing.assert_allclose(rows[2]["user_vector"], [0, 0.894427, 0.447214, 0], atol=1e-6)


def test_the_vocabulary_keeps_the_most_widely_carried_tokens() -> None:
    from features.engineering import Vocabulary

    attributes = ["a=1|b=1", "a=1|b=2", "a=1|c=9", "b=1"]
    assert Vocabulary.from_attributes(attributes, max_tokens=2).tokens == ("a=1", "b=1")
    assert Vocabulary.from_attributes(attributes).tokens == ("a=1", "b=1", "b=2", "c=9")
