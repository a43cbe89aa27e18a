"""The catalogue index: every known item's rows for retrieval, search and the rules.

Built from the item cache's table (the same features the ranking reads) and the
catalogue's text, whenever the cache is (re)filled: at start-up and after each
materialization, on the refresh thread. A request only reads the current one,
never builds: `CatalogueIndex.current` is swapped in one assignment.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from features.lexical import LexicalIndex
from features.scoring import row_norms
from features.text import category_of, item_text
from server.ranking.stages.top_k import top_k
from server.retrieval.vectors import VectorIndex
from server.sources.item_cache import ItemTable

log = logging.getLogger(__name__)

# An item's searchable text and its category, by item id.
Described = Mapping[str, tuple[str, str]]
# Item ids -> (float32 [n, dim] text vectors, bool [n] found): the item text view's read.
TextReader = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class IndexSettings:
    exact_max_items: int = 50_000  # beyond this, vector search is approximate (HNSW)
    threads: int = 2  # threads that build an HNSW graph
    popular: int = 5_000  # the most popular items kept in order, for cold start


class Catalogue:
    """Row r of every array is item ids[r]; only items the store knows are here."""

    def __init__(
        self,
        ids: list[str],
        bias: np.ndarray,
        vectors: np.ndarray,
        embeddings: np.ndarray | None,
        described: Described,
        settings: IndexSettings,
        text_vectors: np.ndarray | None = None,
    ) -> None:
        self.ids = ids
        self.row_of = {item: row for row, item in enumerate(ids)}
        norms = row_norms(vectors)
        # similarity x bias = (u . v / |u||v|) x ub x ib: an inner product of u with
        # v x ib / |v|, up to the user's own factor, which does not change the order.
        scale = np.divide(bias, norms, out=np.zeros_like(bias), where=norms > 0)
        self.interest = VectorIndex(
            vectors * scale[:, np.newaxis], settings.exact_max_items, settings.threads
        )
        self.embedding = (
            None
            if embeddings is None or embeddings.shape[1] == 0
            else VectorIndex(embeddings, settings.exact_max_items, settings.threads, lifted=True)
        )
        self.popular = top_k(bias, settings.popular)  # best first; ties in row order
        texts = [described.get(item, ("", ""))[0] for item in ids]
        self.lexical = LexicalIndex(texts)
        names = [described.get(item, ("", ""))[1] for item in ids]
        _, codes = np.unique(np.asarray(names, dtype=object), return_inverse=True)
        self.category = codes.astype(np.int64)
        # Unit rows (zero where an item has no text), so an inner product is the cosine.
        self.text = (
            None
            if text_vectors is None or text_vectors.shape[1] == 0
            else VectorIndex(text_vectors, settings.exact_max_items, settings.threads)
        )

    def cosines(self, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """float32: each row's text vector . vector; 0 for -1 (a row not held)."""
        if self.text is None or not rows.size:
            return np.zeros(rows.size, dtype=np.float32)
        held = rows >= 0
        found: np.ndarray = self.text.matrix.take(np.maximum(rows, 0), axis=0) @ vector
        return np.where(held, found, np.float32(0.0)).astype(np.float32, copy=False)

    def __len__(self) -> int:
        return len(self.ids)

    def unit_rows(self, rows: np.ndarray) -> np.ndarray:
        """The attribute vectors of these rows at unit length (zero rows stay zero),
        from the interest matrix: its rows are the unit vectors times a positive bias,
        so the catalogue holds one copy of the vectors, not two."""
        scaled = self.interest.matrix[rows]
        norms = row_norms(scaled)
        unit: np.ndarray = scaled / np.where(norms > 0, norms, 1.0)[:, np.newaxis]
        return unit

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row per id, -1 for an id the catalogue does not hold."""
        get = self.row_of.get
        return np.fromiter(
            map(get, item_ids, itertools.repeat(-1)), dtype=np.int64, count=len(item_ids)
        )


def from_table(
    table: ItemTable,
    described: Described,
    settings: IndexSettings,
    text: TextReader | None = None,
) -> Catalogue:
    """The known items of a cache table, in slot order, with their text vectors
    where `text` reads some."""
    slots = np.flatnonzero(table.known[: table.used])
    ids = [table.ids[slot] or "" for slot in slots.tolist()]
    embeddings = None if table.embeddings is None else table.embeddings[slots]
    vectors = read_text_vectors(text, ids) if text is not None else None
    return Catalogue(
        ids,
        table.scalars[slots, 0].copy(),
        table.vectors[slots],
        embeddings,
        described,
        settings,
        vectors,
    )


def read_text_vectors(text: TextReader, ids: Sequence[str], batch: int = 5000) -> np.ndarray | None:
    """[len(ids), dim], zero rows for items without text; None when no item has any."""
    parts = [text(ids[start : start + batch]) for start in range(0, len(ids), batch)]
    dims = {vectors.shape[1] for vectors, found in parts if found.any()}
    if not dims:
        return None
    if len(dims) > 1:
        raise ValueError(f"item text vectors of several widths {sorted(dims)}; backfill again")
    (dim,) = dims
    out = np.zeros((len(ids), dim), dtype=np.float32)
    start = 0
    for vectors, found in parts:
        if found.any():
            out[start : start + len(found)][found] = vectors[found]
        start += len(found)
    return out


def read_described(path: Path) -> dict[str, tuple[str, str]]:
    """Each catalogue item's (text, category), from the workspace's catalog table;
    empty where this host has none (search then matches nothing)."""
    if not path.exists():
        log.warning("no catalog table at %s: queries will match no item", path)
        return {}
    table = pq.read_table(path, columns=["item_id", "title", "attributes"])
    return {
        item: (item_text(title, attributes), category_of(attributes))
        for item, title, attributes in zip(
            table["item_id"].to_pylist(),
            table["title"].to_pylist(),
            table["attributes"].to_pylist(),
            strict=True,
        )
    }


class CatalogueIndex:
    """The current catalogue, rebuilt with the item cache; None until the first build."""

    def __init__(
        self, catalog_path: Path | None, settings: IndexSettings, text: TextReader | None = None
    ) -> None:
        self._path = catalog_path
        self._text = text  # None: search by BM25 alone
        self.settings = settings
        self.current: Catalogue | None = None

    def rebuild(self, table: ItemTable) -> None:
        started = time.perf_counter()
        described = read_described(self._path) if self._path is not None else {}
        self.current = from_table(table, described, self.settings, self._text)
        log.info(
            "catalogue index built: %d items in %.1f s (%s vector search, %s)",
            len(self.current),
            time.perf_counter() - started,
            "exact" if self.current.interest.exact else "HNSW",
            "no item text vectors" if self.current.text is None else "with item text vectors",
        )
