"""The ranking, as one list of stages."""

from __future__ import annotations

from server.ranking.pipeline import HEURISTIC_VERSION, Pipeline
from server.ranking.stages.bias import Bias
from server.ranking.stages.cold_start import ColdStart
from server.ranking.stages.embedding_scores import EmbeddingScores
from server.ranking.stages.gather_items import GatherItems, ItemReader
from server.ranking.stages.heuristic_score import HeuristicScore
from server.ranking.stages.model_score import ModelScore, Scorer
from server.ranking.stages.similarity import Similarity
from server.ranking.stages.top_k import TopK
from server.ranking.stages.unknown_last import UnknownLast


def build_pipeline(
    items: ItemReader, model: Scorer | None, version: str = "", embeddings: bool = False
) -> Pipeline:
    """The stages in order; with no model, the score is the method's heuristic.

    embeddings: the model takes the learned-embedding inputs.
    """
    return Pipeline(
        [
            GatherItems(items),
            Similarity(),
            Bias(),
            EmbeddingScores(),
            ModelScore(model, embeddings) if model else HeuristicScore(),
            ColdStart(),
            UnknownLast(),
            TopK(),
        ],
        version if model else HEURISTIC_VERSION,
    )
