"""What the ranking reads of the catalogue index (server/retrieval builds it):
retrieval, search and the rules, as protocols, so the ranking stays pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Hits(Protocol):
    @property
    def rows(self) -> np.ndarray: ...  # int64 catalogue rows, best first


class VectorSearch(Protocol):
    @property
    def exact(self) -> bool: ...

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> Hits: ...


class LexicalSearch(Protocol):
    def matched(self, query_terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]: ...


class CatalogueView(Protocol):
    """Row r of every array is item ids[r]."""

    @property
    def ids(self) -> list[str]: ...

    @property
    def popular(self) -> np.ndarray: ...  # rows by item bias, best first

    @property
    def category(self) -> np.ndarray: ...  # int64 category code per row

    @property
    def interest(self) -> VectorSearch: ...  # by similarity x bias

    @property
    def embedding(self) -> VectorSearch | None: ...  # learned embeddings; None when not served

    @property
    def lexical(self) -> LexicalSearch: ...

    @property
    def text(self) -> VectorSearch | None: ...  # item text vectors; None when not published

    def cosines(self, rows: np.ndarray, vector: np.ndarray) -> np.ndarray: ...  # 0: no text

    def rows(self, item_ids: Sequence[str]) -> np.ndarray: ...  # -1 where not held

    def unit_rows(self, rows: np.ndarray) -> np.ndarray: ...  # attribute vectors, unit length

    def __len__(self) -> int: ...


class TextEncoding(Protocol):
    """A query's text vector from the language model, unit length."""

    def encode(self, text: str) -> np.ndarray: ...


class CatalogueSource(Protocol):
    @property
    def current(self) -> CatalogueView | None: ...  # None until one is built


class CatalogueUnavailable(Exception):
    """Retrieval was asked for, and the catalogue index is not built (or is empty)."""
