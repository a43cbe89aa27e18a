"""The user history table: the items each user converted on (bought, or rated),
from the events strictly before t, as one snapshot at t.

It serves the buy-exclusion rule, not the ranker, so only the newest snapshot is
written: the online store needs the latest list, and training never joins it.
Both backfill engines call this after their snapshots, so they write the same table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from features import names
from features.schema import CONVERSION_EVENTS
from features.validation import Rejections, valid_events


def history_schema() -> pa.Schema:
    return pa.schema(
        [
            (names.USER_KEY, pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            (names.INTERACTED_ITEMS, pa.list_(pa.string())),
        ]
    )


def history_table(event_files: Sequence[Path], item_ids: Sequence[str], t: datetime) -> pa.Table:
    """One row per user with a valid conversion before t: their distinct catalogue
    items, sorted."""
    empty = history_schema().empty_table()
    if not event_files:
        return empty
    events = ds.dataset([str(f) for f in event_files], format="parquet")
    wanted = (ds.field("ts") < pa.scalar(t, pa.timestamp("us", tz="UTC"))) & ds.field(
        "event_type"
    ).isin(sorted(CONVERSION_EVENTS))
    rows = events.to_table(filter=wanted)
    # The backfill's own rules (features.validation), so a row it rejects is no history
    # either; its counts are the backfill's to report, not counted twice here.
    rows = valid_events(rows, pa.array(list(item_ids), pa.string()), Rejections())
    if not rows.num_rows:
        return empty
    pairs = (
        rows.group_by(["user_id", "item_id"])
        .aggregate([])
        .sort_by([("user_id", "ascending"), ("item_id", "ascending")])
    )
    grouped = pairs.group_by("user_id", use_threads=False).aggregate([("item_id", "list")])
    return pa.table(
        {
            names.USER_KEY: grouped["user_id"],
            "event_timestamp": pa.array([t] * grouped.num_rows, pa.timestamp("us", tz="UTC")),
            names.INTERACTED_ITEMS: grouped["item_id_list"],
        },
        schema=history_schema(),
    )
