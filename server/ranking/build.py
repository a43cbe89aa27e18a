"""The ranking, as one list of stages."""

from __future__ import annotations

from server.ranking.catalogue import CatalogueSource, CatalogueView
from server.ranking.pipeline import HEURISTIC_VERSION, Pipeline
from server.ranking.stages.bias import Bias
from server.ranking.stages.cold_start import ColdStart
from server.ranking.stages.cut import Cut
from server.ranking.stages.diversity import Diversity
from server.ranking.stages.embedding_scores import EmbeddingScores
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


def build_pipeline(
    items: ItemReader,
    model: Scorer | None,
    version: str = "",
    embeddings: bool = False,
    catalogue: CatalogueSource | None = None,
    blocked: frozenset[str] = frozenset(),
) -> Pipeline:
    """The stages in order: retrieve, match the query, filter, score, rank, then
    the business rules; with no model, the score is the method's heuristic.

    embeddings: the model takes the learned-embedding inputs. catalogue: the index
    retrieval and search read (one that is never built serves given candidates only).
    blocked: the configured block list.
    """
    return Pipeline(
        [
            Retrieve(catalogue or NoCatalogue()),
            QueryMatch(),
            Filters(blocked),
            GatherItems(items),
            Similarity(),
            Bias(),
            EmbeddingScores(),
            ModelScore(model, embeddings) if model else HeuristicScore(),
            ColdStart(),
            QueryBlend(),
            UnknownLast(),
            TopK(),
            Diversity(),
            Mmr(),
            Explore(),
            Cut(),
        ],
        version if model else HEURISTIC_VERSION,
    )
