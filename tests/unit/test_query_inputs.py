"""A query-aware ranker's inputs: the same parts in training and serving, exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.model_inputs import QUERY_INPUTS, assemble, input_columns
from features.relevance import query_parts
from server.ranking.batch import RankQuery
from server.ranking.build import Retrieval, build_pipeline
from server.retrieval.query_encoder import QueryEncoder
from tests.fakes import COLD, FakeItems, user
from tests.unit.test_semantic_search import ITEMS, FakeEncoder, Held, catalogue
from training.dataset import _unique_timestamps
from training.search_rows import retrieved


class Recorder:
    """A Scorer that keeps the matrix it was given and scores by its first column."""

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def score(self, features: np.ndarray) -> np.ndarray:
        self.inputs.append(features)
        return np.linspace(0.9, 0.1, len(features)).astype(np.float32)


def test_the_query_columns_come_last_and_are_filled_or_broadcast() -> None:
    columns = input_columns(2, embeddings=False, query=True)
    assert (
        columns[-4:]
        == list(QUERY_INPUTS)
        == [
            "query_relevance",
            "query_lexical",
            "query_semantic",
            "has_query",
        ]
    )
    one = np.ones(2, np.float32)
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    parts = np.array([[0.5, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 1.0]], np.float32)
    out = assemble(one, one, np.ones(2, np.float32), 1.0, 1.0, vectors, one, one, one, None, parts)
    assert out.shape == (2, len(columns))
    assert out[:, -4:].tolist() == parts.tolist()
    assert out[:, -6:-4].tolist() == vectors.tolist()  # the interaction columns stay put
    zeros = assemble(one, one, np.ones(2), 1.0, 1.0, vectors, one, one, one, None, np.zeros((1, 4)))
    assert zeros[:, -4:].tolist() == [[0.0] * 4] * 2


def test_the_served_ranker_reads_the_parts_and_weighs_the_query_itself() -> None:
    model = Recorder()
    encoder = QueryEncoder(FakeEncoder(), 8)  # type: ignore[arg-type]
    retrieval = Retrieval(Held(catalogue()), encoder=encoder, lexical_share=0.5)
    pipeline = build_pipeline(FakeItems(ITEMS), model, "0009", False, retrieval, query=True)
    ids = ["mug", "sandal", "runner"]
    query = RankQuery("u", ids, 0, True, ("sneakers",), "sneakers")
    ranking = pipeline.run(query, user([1.0, 0.0], bias=1.0))
    # Served parts over these candidates, as training computes them (features.relevance):
    # cosines 0, .96, .8 with the fake's vector; the mug alone matches "sneakers".
    lexical, semantic, fused = query_parts(
        np.array([1.0, 0.0, 0.0], np.float32),
        np.array([0.0, 0.96, 0.8], np.float32),
        np.float32(0.5),
    )
    (inputs,) = model.inputs
    np.testing.assert_allclose(inputs[:, -4], fused, rtol=1e-6)
    np.testing.assert_allclose(inputs[:, -3], lexical, rtol=1e-6)
    np.testing.assert_allclose(inputs[:, -2], semantic, rtol=1e-6)
    assert inputs[:, -1].tolist() == [1.0, 1.0, 1.0]
    # No blend: the model's own order (its scores fall with the row), not relevance^2.
    assert ranking.item_ids == ids
    np.testing.assert_allclose(ranking.scores, [0.9, 0.5, 0.1], rtol=1e-6)
    plain = pipeline.run(RankQuery("u", ids, 0, True), user([1.0, 0.0], bias=1.0))
    assert model.inputs[1][:, -4:].tolist() == [[0.0] * 4] * 3 and plain.item_ids == ids
    cold = pipeline.run(query, COLD)  # no model for a cold-start user: the blend applies
    assert cold.item_ids[0] in {"mug", "sandal"} and len(model.inputs) == 2


def test_search_candidates_are_the_fused_best_of_both_lists() -> None:
    relevance = np.array([0.0, 3.0, 0.0, 1.0, 0.0], np.float32)
    cosine = np.array([0.9, 0.1, 0.5, 0.3, 0.0], np.float32)
    # lexical best two: 1, 3; nearest two: 0, 2; fused over {0,1,2,3} at .5:
    # lexical 0, 1, 0, 1/3; semantic (cos - .2)+ over .7: 1, 0, 3/7, 1/7.
    rows = retrieved(relevance, cosine, np.float32(0.5), 2)
    assert rows.tolist() == [0, 1]  # .5 and .5, ties by row
    assert retrieved(relevance, cosine, np.float32(0.5), 4).tolist() == [0, 1, 3, 2]


def test_timestamps_are_made_unique_per_user_by_shifting_back_only() -> None:
    t = pd.Timestamp("2026-01-02", tz="UTC")
    us = pd.Timedelta(microseconds=1)
    rows = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "u", "v"],
            "event_timestamp": [t, t, t - us, t, t],
        }
    )
    out = _unique_timestamps(rows)
    # u's rows, newest first in their order: t, t, t, t - 1us -> t, t - 1, t - 2, t - 3.
    assert out["event_timestamp"].tolist() == [t, t - us, t - 3 * us, t - 2 * us, t]
