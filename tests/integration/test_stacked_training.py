"""`train --stack-per-user 1` on a real workspace: the embeddings train on every
choice but the stack, the learners are compared on it, the best is published."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from features.workspace import Stores, Workspace
from tests.support import materialized_copy, small_training
from training import dataset, registry
from training.publish import choices
from training.stacking import stack_pairs, without
from training.train import train


def test_the_stack_is_kept_from_the_embeddings_and_chooses_them(
    workspace: Workspace, tmp_path: Path
) -> None:
    home = materialized_copy(workspace, tmp_path / "home", Stores())
    result = train(home, replace(small_training(), stack_per_user=1), lambda _: None, force=True)
    meta = registry.load(home.models_dir, result.version).metadata
    stack = stack_pairs(dataset.first_positives(home), 1)
    assert meta["embedding_pairs"] == len(without(choices(home), stack))
    learners = meta["embedding_learners"]
    grid = [f"implicit ALS f={f} alpha={a}" for f in (64, 128) for a in (2, 5, 10)]
    assert set(learners) == {"shoprank MF", *grid}  # MF, and the ALS grid
    best = max(learners, key=lambda name: learners[name]["ndcg@10"])
    assert meta["embedding_learner"] == best
    # The published vectors are the chosen learner's: its row is the embeddings row.
    assert result.metrics["embeddings"] == result.metrics[best]
    # The ranker learned from stack positives only, one per user at most.
    assert 0 < meta["training_rows"] <= len(stack) * (1 + small_training().negatives)


def test_out_of_fold_training_publishes_the_als_fitted_on_every_pair(
    workspace: Workspace, tmp_path: Path
) -> None:
    home = materialized_copy(workspace, tmp_path / "home", Stores())
    config = replace(small_training(), embedding_folds=3)
    result = train(home, config, lambda _: None, force=True)
    meta = registry.load(home.models_dir, result.version).metadata
    assert meta["embedding_learner"] == "implicit ALS f=64 alpha=5"
    assert meta["embedding_pairs"] == len(choices(home))  # published: every pair
    assert result.metrics["embeddings"] == result.metrics["implicit ALS f=64 alpha=5"]
    assert "shoprank MF" not in result.metrics
