"""The pipeline's wiring, checked at build, and its timings, kept by stage name."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from server.ranking.batch import Batch, RankQuery
from server.ranking.build import build_pipeline
from server.ranking.pipeline import Pipeline, WiringError
from tests.fakes import FakeItems, FakeScorer, user

ITEMS = FakeItems({"a": ([1.0, 0.0], 0.5)})


@dataclass
class Step:
    name: str
    needs: tuple[str, ...] = ()
    gives: tuple[str, ...] = ()

    def __call__(self, batch: Batch) -> None:
        for column in self.gives:
            batch[column] = batch["score"] if column != "score" else _zeros(batch)


def _zeros(batch: Batch) -> object:
    import numpy as np

    return np.zeros(len(batch), np.float32)


def test_a_stage_needing_a_column_nothing_gives_is_refused_naming_both() -> None:
    with pytest.raises(
        WiringError, match=r"stage 'rank' needs column 'score', but no earlier stage gives it"
    ):
        Pipeline([Step("gather", ("item_id",), ("known",)), Step("rank", ("score",))], "v")


def test_a_stage_before_the_one_that_gives_its_column_is_told_to_move() -> None:
    with pytest.raises(
        WiringError,
        match=r"stage 'rank' needs column 'score', but only the later stage 'score' gives it",
    ):
        Pipeline([Step("rank", ("score",)), Step("score", (), ("score",))], "v")


def test_two_stages_of_one_name_are_refused() -> None:
    with pytest.raises(WiringError, match=r"two stages are named 'twice'"):
        Pipeline([Step("twice"), Step("twice")], "v")


def test_the_request_gives_the_item_ids() -> None:
    Pipeline([Step("gather", ("item_id",))], "v")
    with pytest.raises(WiringError, match="needs column 'item_id'"):
        Pipeline([Step("gather", ("item_id",))], "v", given=())


def test_the_built_pipelines_read_as_the_list_of_their_stages() -> None:
    head = ["encode_query", "retrieve", "query_match", "filters", "gather_items"]
    common = [*head, "similarity", "bias", "embedding_scores"]
    tail = ["cold_start", "query_blend", "unknown_last", "top_k"]
    tail += ["diversity", "mmr", "explore", "cut"]
    heuristic = build_pipeline(ITEMS, None)
    assert heuristic.stage_names == [*common, "heuristic_score", *tail]
    assert heuristic.version == "heuristic"
    modelled = build_pipeline(ITEMS, FakeScorer([1.0]), "0007", embeddings=True)
    assert modelled.stage_names == [*common, "model_score", *tail]
    assert modelled.version == "0007"


def test_each_stage_is_timed_under_its_name() -> None:
    pipeline = build_pipeline(ITEMS, None)
    ranking = pipeline.run(RankQuery("u", ["a"], 0, False), user([1.0, 0.0]))
    assert list(ranking.timings) == pipeline.stage_names
    assert all(seconds >= 0 for seconds in ranking.timings.values())


def test_a_ranking_reads_its_items_once() -> None:
    items = FakeItems({"a": ([1.0, 0.0], 0.5), "b": ([0.0, 1.0], 0.5)})
    build_pipeline(items, None).run(RankQuery("u", ["a", "b", "x"], 0, True), user([1.0, 0.0]))
    assert items.reads == 1
