"""The exported language model against sentence-transformers, and the item text table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features import names
from features.item_text import item_text_table
from features.schema import CATALOG_SCHEMA
from features.text_encoder import TextEncoder, read_meta
from training.text_encoder import model_dir

TEXTS = [
    "running shoes",
    "sneakers",
    "Star Wars: Episode IV - A New Hope (1977) Action Adventure Fantasy Sci-Fi",
    "Café crème brûlée 👟",
    "x " * 400,  # past the 256 tokens the model takes: truncated alike
    "",
]


def test_the_onnx_encoder_gives_what_sentence_transformers_gives(text_encoder: Path) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(model_dir()), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True, batch_size=len(TEXTS))
    encoder = TextEncoder(text_encoder).load()
    got = encoder.encode(TEXTS, batch=4)  # batches of several lengths, padded
    assert got.shape == (len(TEXTS), 384) == expected.shape
    assert np.abs(got - expected).max() < 1e-5
    assert read_meta(text_encoder).dim == 384
    # A text alone and in a padded batch: the same vector.
    alone = encoder.encode([TEXTS[0]])
    assert np.abs(alone[0] - got[0]).max() < 1e-5
    # Synonyms are near, other things are far: what semantic search relies on.
    shoes, sneakers, film = got[0], got[1], got[2]
    assert float(shoes @ sneakers) > 0.6 > 0.2 > float(shoes @ film)


def test_the_item_text_table_embeds_each_distinct_text_once(
    text_encoder: Path, tmp_path: Path
) -> None:
    catalog = pa.table(
        {
            "item_id": ["a", "b", "c", "d"],
            "title": ["Trail Runner", "Trail Runner", None, "Espresso Machine"],
            "price": [1.0, 2.0, 3.0, 4.0],
            "attributes": ["category=running_shoes", "category=running_shoes", "size=1", ""],
        },
        schema=CATALOG_SCHEMA,
    )
    pq.write_table(catalog, tmp_path / "catalog.parquet")
    at = datetime(2026, 1, 2, tzinfo=UTC)
    table = item_text_table(tmp_path / "catalog.parquet", text_encoder, at)
    assert table is not None
    assert table[names.ITEM_KEY].to_pylist() == ["a", "b", "d"]  # c has no words
    vectors = np.asarray(table[names.TEXT_VECTOR].to_pylist(), dtype=np.float32)
    expected = TextEncoder(text_encoder).load().encode(["Trail Runner running shoes"])[0]
    assert np.abs(vectors[0] - expected).max() < 1e-6
    assert np.array_equal(vectors[0], vectors[1])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert table["event_timestamp"].to_pylist() == [at] * 3
    assert item_text_table(tmp_path / "catalog.parquet", tmp_path / "none", at) is None
