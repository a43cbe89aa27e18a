"""The stage loop's cost: Pipeline.run against the same ranking fused into one function.

    .venv/bin/python bench/pipeline.py --home var [--candidates 100] [--rounds 10]

The baseline computes what build_pipeline's stages compute (gather, similarity,
bias, embedding scores, the ONNX model, cold start, unknown last, top-k) in one
function with no Batch and no stages, as server/pipeline.py did before the
stages; both run in this process, in alternating rounds, over the same cached
items, user and model, and must give the same ranking. It prints microseconds
per ranking (the best round of each) and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from features.model_inputs import assemble
from features.rows import UserRow
from features.scoring import combined_bias, cosine_similarity, user_dots
from server.app import Loaded, load
from server.config import Settings
from server.ranking.batch import Ranking, RankQuery
from server.ranking.stages.model_score import ModelScore
from server.ranking.stages.top_k import top_k


def fused(loaded: Loaded) -> Callable[[RankQuery, UserRow], Ranking]:
    stage = next(s for s in loaded.pipeline.stages if isinstance(s, ModelScore))
    model = stage._model
    features = loaded.features

    def rank(query: RankQuery, user: UserRow) -> Ranking:
        started = time.perf_counter()
        items = features.items(query.candidates)
        known = items.known
        similarity = cosine_similarity(user.vector, items.vectors, items.vector_norms)
        bias = combined_bias(user.bias, items.bias)
        assert user.embedding is not None and items.embeddings is not None
        dots = user_dots(user.embedding, items.embeddings).astype(np.float32, copy=False)
        cosine = cosine_similarity(user.embedding, items.embeddings, items.embedding_norms, dots)
        inputs = assemble(
            similarity, bias, user.vector, user.bias, user.activity, items.vectors,
            items.bias, items.conversion, items.price, (dots, cosine),
        )  # fmt: skip
        scores = model.score(inputs)
        if np.count_nonzero(known) < len(known):
            scores = np.where(known, scores, np.float32(0.0))
        order = top_k(scores, query.top_k)
        now = time.time()
        return Ranking(  # with the four timings the pre-stage pipeline kept
            item_ids=list(map(query.candidates.__getitem__, order.tolist())),
            scores=scores[order],
            cold_start=False,
            user_age=now - user.timestamp,
            model_version=loaded.pipeline.version,
            timings={"fetch": started, "score": started, "model": now, "rank": now},
            parts=None,
        )

    return rank


def best_microseconds(run: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, default=Path("var"))
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    loaded = load(Settings(home=args.home))
    catalog = pq.read_table(args.home / "data" / "catalog.parquet", columns=["item_id"])
    query = RankQuery("warm", catalog["item_id"].to_pylist()[: args.candidates], 100, False)
    users = pq.read_table(args.home / "data" / "events.parquet", columns=["user_id"])
    user = asyncio.run(loaded.features.user(users["user_id"][0].as_py()))
    assert user.known, "the benchmark ranks for a known user"
    baseline = fused(loaded)
    ranking = loaded.pipeline.run(query, user)
    same = baseline(query, user)
    assert ranking.item_ids == same.item_ids
    assert ranking.scores.tolist() == same.scores.tolist()
    staged, plain = [], []
    for _ in range(args.rounds):  # alternating, so a drift in speed falls on both
        staged.append(best_microseconds(lambda: loaded.pipeline.run(query, user), args.calls))
        plain.append(best_microseconds(lambda: baseline(query, user), args.calls))
    print(f"{args.candidates} candidates, top_k 100, best of {args.rounds} rounds of {args.calls}")
    print(f"  Pipeline.run (8 stages)   {min(staged):8.1f} us")
    print(f"  fused, no stages          {min(plain):8.1f} us")
    print(f"  ratio staged / fused    = {min(staged) / min(plain):.3f}")


if __name__ == "__main__":
    main()
