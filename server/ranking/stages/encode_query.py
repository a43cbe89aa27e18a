"""EncodeQuery: the query's text vector, for semantic search."""

from __future__ import annotations

from server.ranking.batch import Batch
from server.ranking.catalogue import CatalogueSource, TextEncoding


class EncodeQuery:
    """Sets batch.query_vector from the language model (server/retrieval/query_encoder.py,
    cached) when the query has terms and the catalogue holds text vectors to compare
    it with. Without a query the encoder is never called: a recommendation costs
    nothing here."""

    name = "encode_query"
    needs = ()
    gives = ()

    def __init__(self, encoder: TextEncoding | None, index: CatalogueSource) -> None:
        self._encoder = encoder
        self._index = index

    def __call__(self, batch: Batch) -> None:
        if self._encoder is None or not batch.query.terms:
            return
        catalogue = self._index.current
        if catalogue is not None and catalogue.text is not None:
            batch.query_vector = self._encoder.encode(batch.query.text)
