"""The ranking, as one list of stages."""

from __future__ import annotations

from dataclasses import dataclass

from server.ranking.catalogue import CatalogueSource, CatalogueView, TextEncoding
from server.ranking.pipeline import HEURISTIC_VERSION, Pipeline
from server.ranking.stages.bias import Bias
from server.ranking.stages.cold_start import ColdStart
from server.ranking.stages.cut import Cut
from server.ranking.stages.diversity import Diversity
from server.ranking.stages.embedding_scores import EmbeddingScores
from server.ranking.stages.encode_query import EncodeQuery
from server.ranking.stages.explore import Explore
from server.ranking.stages.filters import Filters
from server.ranking.stages.gather_items import GatherItems, ItemReader
from server.ranking.stages.heuristic_score import HeuristicScore
from server.ranking.stages.mmr import Mmr
from server.ranking.stages.model_score import ModelScore, Scorer
from server.ranking.stages.query_blend import QueryBlend
from server.ranking.stages.query_match import QueryMatch
from server.ranking.stages.retrieve import Retrieve
from server.ranking.stages.similarity import Similarity
from server.ranking.stages.top_k import TopK
from server.ranking.stages.unknown_last import UnknownLast


class NoCatalogue:
    """A pipeline without a catalogue index ranks given candidates only."""

    current: CatalogueView | None = None


@dataclass(frozen=True)
class Retrieval:
    """What a server's pipelines share, whatever the model, across swaps.

    catalogue: the index retrieval and search read (None, or one never built,
    serves given candidates only). blocked: the configured block list. encoder:
    the query encoder, for semantic search (None: BM25 alone). lexical_share:
    BM25's weight in a query's hybrid relevance, the rest the semantic cosine's.
    """

    catalogue: CatalogueSource | None = None
    blocked: frozenset[str] = frozenset()
    encoder: TextEncoding | None = None
    lexical_share: float = 1.0


GIVEN_ONLY = Retrieval()  # no catalogue index: rank given candidates only


def build_pipeline(
    items: ItemReader,
    model: Scorer | None,
    version: str = "",
    embeddings: bool = False,
    retrieval: Retrieval = GIVEN_ONLY,
    query: bool = False,
) -> Pipeline:
    """The stages in order: encode the query, retrieve, match the query, filter,
    score, rank, then the business rules; with no model, the score is the method's
    heuristic. embeddings: the model takes the learned-embedding inputs; query:
    the query's relevance parts, and weighs them itself."""
    index = retrieval.catalogue or NoCatalogue()
    share = retrieval.lexical_share
    encoder = retrieval.encoder if share < 1.0 else None  # BM25 alone: nothing to encode
    return Pipeline(
        [
            EncodeQuery(encoder, index),
            Retrieve(index, share),
            QueryMatch(share),
            Filters(retrieval.blocked),
            GatherItems(items),
            Similarity(),
            Bias(),
            EmbeddingScores(),
            ModelScore(model, embeddings, query) if model else HeuristicScore(),
            ColdStart(),
            QueryBlend(model is not None and query),
            UnknownLast(),
            TopK(),
            Diversity(),
            Mmr(),
            Explore(),
            Cut(),
        ],
        version if model else HEURISTIC_VERSION,
    )
