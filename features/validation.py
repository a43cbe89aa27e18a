"""Incoming rows checked against the schema: bad rows are counted by reason and
left out, never written silently."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from features.schema import EVENT_WEIGHTS, EVENTS_SCHEMA

# Event times outside this window are data errors (epoch zeros, far futures).
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)


@dataclass
class Rejections:
    """Rows left out, by reason."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, reason: str, rows: int) -> None:
        if rows:
            self.counts[reason] += rows

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "no bad rows"
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        return f"{self.total} bad rows left out: {parts}"


def event_problems(table: pa.Table, known_items: pa.Array, now: datetime | None = None) -> pa.Array:
    """Per event row, the first reason it cannot be used, or null for a good row: the
    one rule set for the backfill's batches and the event API's calls."""
    missing = set(EVENTS_SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"events lack column(s) {sorted(missing)}")
    latest = (now or datetime.now(UTC)) + timedelta(days=1)
    ts = table["ts"].cast(pa.timestamp("us", tz="UTC"))
    checks = [
        ("null or empty user_id", _present(table["user_id"])),
        ("null or empty item_id", _present(table["item_id"])),
        ("unknown event_type", pc.is_in(table["event_type"], pa.array(sorted(EVENT_WEIGHTS)))),
        ("timestamp missing or out of range", _in_range(ts, EARLIEST, latest)),
        ("item not in catalog", pc.is_in(table["item_id"], known_items)),
    ]
    problem = pa.nulls(table.num_rows, pa.string())
    for reason, ok in reversed(checks):  # the first failing check's reason wins
        ok = pc.fill_null(ok, False)
        problem = pc.if_else(ok, problem, pa.scalar(reason))
    return problem.combine_chunks() if isinstance(problem, pa.ChunkedArray) else problem


def valid_events(
    table: pa.Table, known_items: pa.Array, rejections: Rejections, now: datetime | None = None
) -> pa.Table:
    """The rows of an event batch that can be used; the rest counted in rejections."""
    problem = event_problems(table, known_items, now)
    bad = problem.drop_null()
    if len(bad):
        counts = bad.value_counts()
        for entry in counts.to_pylist():
            rejections.add(entry["values"], entry["counts"])
    return table.filter(pc.is_null(problem))


def valid_catalog(table: pa.Table, rejections: Rejections) -> pa.Table:
    """Catalog rows with an id and a non-negative (or unknown) price."""
    ok_id = pc.fill_null(_present(table["item_id"]), False)
    ok_price = pc.fill_null(pc.greater_equal(table["price"], 0.0), True)
    rejections.add("catalog row without item_id", pc.sum(pc.invert(ok_id)).as_py() or 0)
    rejections.add("negative price", pc.sum(pc.and_(ok_id, pc.invert(ok_price))).as_py() or 0)
    return table.filter(pc.and_(ok_id, ok_price))


def _present(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.and_(pc.is_valid(column), pc.greater(pc.utf8_length(column), 0))


def _in_range(ts: pa.ChunkedArray, low: datetime, high: datetime) -> pa.ChunkedArray:
    return pc.and_(pc.greater_equal(ts, low), pc.less(ts, high))
