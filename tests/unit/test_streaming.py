"""The stream's incremental formula (features.streaming), on hand-made events."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from features.engineering import Aggregates, Interactions, item_basis, user_features
from features.schema import CONVERSION_EVENTS, EVENT_WEIGHTS
from features.streaming import (
    RECENT_ITEMS,
    Snapshot,
    apply,
    datetime_micros,
    served,
    snapshot_of,
)

T = datetime(2026, 3, 1, tzinfo=UTC)
ITEMS = ["i0", "i1", "i2"]
VECTORS = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])


def interactions(rows: list[tuple[int, int, str, datetime]], n_users: int) -> Interactions:
    kinds = [r[2] for r in rows]
    return Interactions(
        user=np.array([r[0] for r in rows], dtype=np.int64),
        item=np.array([r[1] for r in rows], dtype=np.int64),
        weight=np.array([EVENT_WEIGHTS[k] for k in kinds]),
        converted=np.array([k in CONVERSION_EVENTS for k in kinds]),
        n_users=n_users,
        n_items=len(ITEMS),
        ts=np.array([datetime_micros(r[3]) for r in rows], dtype=np.int64),
    )


def snapshot(rows: list[tuple[int, int, str, datetime]], users: list[str]) -> Snapshot:
    before = interactions(rows, len(users))
    assert before.ts is not None
    history = (before.user, before.item, before.ts)
    return snapshot_of(
        T, ITEMS, VECTORS, Aggregates.of(before), {u: k for k, u in enumerate(users)}, history
    )


def events(rows: list[tuple[str, str, str, datetime]]) -> pa.Table:
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "ts": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
        }
    )


BEFORE = [
    (0, 0, "view", T - timedelta(hours=3)),
    (0, 1, "purchase", T - timedelta(hours=2)),
    (1, 1, "view", T - timedelta(hours=1)),
]


def test_the_formula_by_hand() -> None:
    # Before T: |C| = (1, 2, 0), so 1/|C| = (1, 0.5, 1) (an untouched item counts as
    # its first user's), and the conversion rate is 1 purchase in 3 events.
    snap = snapshot(BEFORE, ["a", "b"])
    np.testing.assert_array_equal(snap.basis.inverse, [1.0, 0.5, 1.0])
    assert snap.basis.rate == pytest.approx(1 / 3)
    states = snap.initial(["a", "b", "c"])
    np.testing.assert_allclose(states["a"].raw, [1.0, 1.5])  # 1*1*v0 + 3*0.5*v1
    assert states["a"].recent == ["i1", "i0"]
    assert states["c"].events == 0 and states["c"].recent == []

    done = apply(
        snap,
        states,
        events(
            [
                ("a", "i2", "cart", T + timedelta(minutes=1)),
                ("c", "i0", "purchase", T + timedelta(minutes=2)),
                ("b", "i0", "view", T - timedelta(minutes=5)),  # late: left to the backfill
            ]
        ),
    )
    assert done.users == ["a", "c"] and done.late == 1
    np.testing.assert_allclose(states["a"].raw, [1.0 + 2 * 0.6, 1.5 + 2 * 0.8])
    assert (states["a"].events, states["a"].conversions) == (3.0, 1.0)
    assert states["a"].recent == ["i2", "i1", "i0"]
    assert states["b"].events == 1.0  # untouched
    feats = served(snap, [states["a"], states["c"]])
    norm = math.hypot(2.2, 3.1)
    np.testing.assert_allclose(feats.vector[0], [2.2 / norm, 3.1 / norm], rtol=1e-6)
    np.testing.assert_array_equal(feats.vector[1], [1.0, 0.0])
    # bias: (conversions + 10 * rate) / (events + 10)
    np.testing.assert_allclose(feats.bias, [(1 + 10 / 3) / 13, (1 + 10 / 3) / 11], rtol=1e-6)
    np.testing.assert_allclose(feats.activity, [math.log1p(3), math.log1p(1)], rtol=1e-6)
    # A user's row time moves forward strictly, even for events at one instant.
    assert states["a"].row_ts == datetime_micros(T + timedelta(minutes=1))
    again = apply(snap, states, events([("a", "i0", "view", T + timedelta(minutes=1))]))
    assert again.users == ["a"]
    assert states["a"].row_ts == datetime_micros(T + timedelta(minutes=1)) + 1
    assert states["a"].recent == ["i0", "i2", "i1"]


def test_streaming_a_day_equals_the_batch_formula_on_the_snapshot_basis() -> None:
    rng = np.random.default_rng(5)
    users = [f"u{k}" for k in range(30)]
    kinds = sorted(EVENT_WEIGHTS)

    def random_rows(n: int, among: int, start: datetime) -> list[tuple[int, int, str, datetime]]:
        return [
            (
                int(rng.integers(among)),
                int(rng.integers(len(ITEMS))),
                kinds[int(rng.integers(len(kinds)))],
                start + timedelta(seconds=int(rng.integers(86_400))),
            )
            for _ in range(n)
        ]

    before = random_rows(200, 20, T - timedelta(days=1))  # users 20..29 are new in the day
    day = sorted(random_rows(300, 30, T), key=lambda r: r[3])
    snap = snapshot(before, users[:20])
    states = snap.initial(users)
    table = events([(users[u], ITEMS[i], k, t) for u, i, k, t in day])
    for start in range(0, table.num_rows, 37):  # in batches, as the worker takes them
        apply(snap, states, table.slice(start, 37))
    # The batch formula over every event so far, with the item statistics of T.
    everything = Aggregates.of(interactions(before, 30)).plus(interactions(day, 30))
    batch = user_features(everything, VECTORS, item_basis(Aggregates.of(interactions(before, 20))))
    stream = served(snap, [states[u] for u in users])
    np.testing.assert_allclose(stream.vector, batch.vector, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(stream.bias, batch.bias)
    np.testing.assert_array_equal(stream.activity, batch.activity)


def test_recent_items_keep_the_newest_distinct_ones() -> None:
    snap = snapshot(BEFORE, ["a", "b"])
    states = snap.initial(["a"])
    many = [("a", ITEMS[k % 3], "view", T + timedelta(seconds=k)) for k in range(10)]
    apply(snap, states, events(many))
    assert states["a"].recent == ["i0", "i2", "i1"]  # k = 9, 8, 7
    # An event older than the one recorded for its item does not move it.
    apply(snap, states, events([("a", "i1", "view", T + timedelta(seconds=2))]))
    assert states["a"].recent == ["i0", "i2", "i1"]
    assert RECENT_ITEMS == 20
