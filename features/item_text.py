"""The item text table: each catalogue item's text embedded by the language model,
as one snapshot at t, for semantic search.

An item's text is what BM25 indexes (features/text.py: the title and the
word attributes), so the two searches read the same words. Text does not change
with events, so only the newest snapshot is written, and a text shared by many
items (a synthetic catalogue repeats them) is encoded once. Without an exported
encoder the table is not written and the server searches by BM25 alone.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features import names
from features.text import item_text
from features.text_encoder import TextEncoder, exported

log = logging.getLogger(__name__)


def item_text_schema() -> pa.Schema:
    return pa.schema(
        [
            (names.ITEM_KEY, pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            (names.TEXT_VECTOR, pa.list_(pa.float32())),
        ]
    )


def item_text_table(catalog_path: Path, encoder_dir: Path, t: datetime) -> pa.Table | None:
    """One row per catalogue item with text; None when no encoder is exported."""
    if not exported(encoder_dir):
        log.warning(
            "no text encoder at %s: item text is not embedded and search is lexical only; "
            "run `shoprank features text-encoder` and backfill again",
            encoder_dir,
        )
        return None
    catalog = pq.read_table(catalog_path, columns=["item_id", "title", "attributes"])
    ids = catalog["item_id"].to_pylist()
    texts = [
        item_text(title, attributes)
        for title, attributes in zip(
            catalog["title"].to_pylist(), catalog["attributes"].to_pylist(), strict=True
        )
    ]
    keep = [i for i, text in enumerate(texts) if text]
    distinct, which = np.unique(
        np.asarray([texts[i] for i in keep], dtype=object), return_inverse=True
    )
    encoder = TextEncoder(encoder_dir, threads=0).load()  # 0: every core, off the request path
    vectors = encoder.encode(distinct.tolist())[which]
    dim = vectors.shape[1]
    flat = pa.array(vectors.reshape(-1), pa.float32())
    offsets = pa.array(np.arange(0, (len(keep) + 1) * dim, dim, dtype=np.int32))
    return pa.table(
        {
            names.ITEM_KEY: pa.array([ids[i] for i in keep], pa.string()),
            "event_timestamp": pa.array([t] * len(keep), pa.timestamp("us", tz="UTC")),
            names.TEXT_VECTOR: pa.ListArray.from_arrays(offsets, flat),
        },
        schema=item_text_schema(),
    )
