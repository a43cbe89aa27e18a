"""Retrieve: candidates from the whole catalogue when the request gives none."""

from __future__ import annotations

import numpy as np

from features.relevance import hybrid_relevance
from server.ranking.batch import EMBEDDING, GIVEN, INTEREST, LEXICAL, POPULAR, SEMANTIC, Batch
from server.ranking.catalogue import CatalogueSource, CatalogueUnavailable, CatalogueView
from server.ranking.stages.query_match import best_matches, lexical_match, semantic_match

ONLY_LEXICAL = np.float32(1.0)  # a lexical share of 1: BM25 alone


class Retrieve:
    """Pins the request's catalogue and gives `catalogue_row` (-1 for an item it does
    not hold) and `retrieval_source`. With no candidates given it retrieves
    retrieval_size of them, leaving out the user's interacted items when the query
    excludes them:
      - a query with terms: its BM25 matches and, with a query vector, its nearest
        item texts, the union ranked by the hybrid relevance (QueryMatch's);
      - a known user: embedding neighbours and the top of the interest vector
        (similarity x bias), blended by alternating ranks, so neither score's scale
        decides; the interest vector alone when the user or model has no embedding;
      - a cold-start user: the most popular items.
    """

    name = "retrieve"
    needs = ()
    gives = ("catalogue_row", "retrieval_source")

    def __init__(self, index: CatalogueSource, lexical_share: float = 1.0) -> None:
        self._index = index
        self._share = np.float32(lexical_share)

    def __call__(self, batch: Batch) -> None:
        catalogue = batch.catalogue = self._index.current
        if batch.ids:
            rows = catalogue.rows(batch.ids) if catalogue is not None else np.full(len(batch), -1)
            batch["catalogue_row"] = rows
            batch["retrieval_source"] = np.full(len(batch), GIVEN, dtype=np.int8)
            return
        if catalogue is None or not len(catalogue):
            raise CatalogueUnavailable(
                "no candidates were given and the catalogue index is not built (or empty); "
                "retry shortly, or send candidate_item_ids"
            )
        rows, sources = retrieve(catalogue, batch, self._share)
        batch.ids = [catalogue.ids[row] for row in rows.tolist()]
        batch["catalogue_row"] = rows
        batch["retrieval_source"] = sources


def retrieve(
    catalogue: CatalogueView, batch: Batch, share: np.float32 = ONLY_LEXICAL
) -> tuple[np.ndarray, np.ndarray]:
    query, user = batch.query, batch.user
    size = query.retrieval_size
    exclude = _interacted_rows(catalogue, batch) if query.exclude_interacted else None
    if query.terms:
        return search(catalogue, batch, size, exclude, share)
    if not user.known:
        rows = catalogue.popular
        if exclude is not None and exclude.size:
            rows = rows[~np.isin(rows, exclude)]
        rows = rows[:size]
        return rows, np.full(rows.size, POPULAR, dtype=np.int8)
    interest = catalogue.interest.search(user.vector, size, exclude).rows
    embedding = user.embedding
    if catalogue.embedding is None or embedding is None or not np.any(embedding):
        return interest, np.full(interest.size, INTEREST, dtype=np.int8)
    neighbours = catalogue.embedding.search(embedding, size, exclude).rows
    return blend(neighbours, interest, size)


def search(
    catalogue: CatalogueView,
    batch: Batch,
    size: int,
    exclude: np.ndarray | None,
    share: np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """The query's best `size` rows: BM25's, or BM25's and the text index's ranked
    together by the hybrid relevance; rows relevant to neither are left out."""
    relevance = lexical_match(batch, catalogue)[1]
    if batch.query_vector is None or catalogue.text is None:
        lexical = best_matches(relevance, size, exclude)
        return lexical, np.full(lexical.size, LEXICAL, dtype=np.int8)
    lexical = best_matches(relevance, size, exclude) if share > 0 else np.empty(0, np.int64)
    near = catalogue.text.search(batch.query_vector, size, exclude).rows
    rows = np.unique(np.concatenate([lexical, near]))
    fused = hybrid_relevance(relevance[rows], semantic_match(batch, catalogue, rows), share)
    keep = fused > 0
    rows, fused = rows[keep], fused[keep]
    order = np.argsort(-fused, kind="stable")[:size]  # ties by row: reproducible
    rows = rows[order]
    sources = np.where(np.isin(rows, lexical), LEXICAL, SEMANTIC).astype(np.int8)
    return rows, sources


def blend(first: np.ndarray, second: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Alternate ranks of two lists, first's first, each row once, at most `size`;
    the source of each row is the list it was first taken from."""
    pairs = np.empty(first.size + second.size, dtype=np.int64)
    sources = np.empty(pairs.size, dtype=np.int8)
    both = min(first.size, second.size)
    pairs[: 2 * both : 2], pairs[1 : 2 * both : 2] = first[:both], second[:both]
    sources[: 2 * both : 2], sources[1 : 2 * both : 2] = EMBEDDING, INTEREST
    rest = first[both:] if first.size > both else second[both:]
    pairs[2 * both :] = rest
    sources[2 * both :] = EMBEDDING if first.size > both else INTEREST
    _, where = np.unique(pairs, return_index=True)
    keep = np.sort(where)[:size]
    return pairs[keep], sources[keep]


def _interacted_rows(catalogue: CatalogueView, batch: Batch) -> np.ndarray:
    rows = catalogue.rows(batch.user.interacted)
    return rows[rows >= 0]
