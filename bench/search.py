"""Search benchmark: semantic and hybrid search against BM25 alone, in one run.

    .venv/bin/python bench/search.py --home HOME [--duration 10] [--events 1500]
        [--fusion-model V --query-model V]

HOME: a synthetic workspace built by `shoprank pipeline --dataset synthetic` (it
exports the text encoder and publishes the item text vectors). Each case is a
`shoprank serve --processes 1` of its own, with SHOPRANK_LEXICAL_SHARE set:
  1. quality: NDCG@10 of the search events' sessions, Rank(query, no candidates,
     top_k 10) against the items the shopper viewed (gain 1), carted (2) or bought
     (3) in that session; for no query (taste alone), BM25 alone (share 1),
     semantic alone (0), and hybrid shares 0.25, 0.5 and 0.75. The share is chosen
     on the training period's searches and reported on the held-out period's.
     With --query-model (a model `shoprank train` fitted on the search events too,
     training/search_rows.py), the last case is the hybrid in the ranker: that
     model serves, and weighs the query's relevance parts itself; the others are
     served by --fusion-model (one trained without them). The current model is
     put back at the end;
  2. latency, concurrency 1, top_k 20, no candidates: the served default (hybrid)
     with the query cache on, after every query was seen once (hits), and with
     SHOPRANK_QUERY_CACHE_SIZE=0 (every query encoded: misses), against BM25
     alone, the baseline, in the same run.
Also prints the spread of query-item cosines, in and out of the query's category,
that SEMANTIC_FLOOR (features/relevance.py) rests on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections import defaultdict
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
from serve import SHOPRANK, running  # bench/ is on sys.path when run as a script

from features.relevance import DEFAULT_LEXICAL_SHARE
from features.workspace import Workspace
from server.clients.loadtest import command as loadtest
from server.processes import free_port
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from training import registry

GAIN = {"view": 1.0, "cart": 2.0, "purchase": 3.0}
SHARES = {"bm25 alone": 1.0, "semantic alone": 0.0, "hybrid 0.25": 0.25}
SHARES |= {"hybrid 0.5": 0.5, "hybrid 0.75": 0.75}


def searches(path: Path, n: int, seed: int) -> list[tuple[str, str, dict[str, float]]]:
    """(user, query, {item: gain}) per search event, a seeded sample of n."""
    events = pq.read_table(path).to_pandas()
    gains: dict[str, dict[str, float]] = defaultdict(dict)
    for session, item, kind in zip(
        events["session_id"], events["item_id"], events["event_type"], strict=True
    ):
        if kind in GAIN:
            gains[session][item] = max(gains[session].get(item, 0.0), GAIN[kind])
    found = events[(events["event_type"] == "search") & events["query"].notna()]
    columns = (found["user_id"], found["query"], found["session_id"])
    rows = [(u, q, gains[s]) for u, q, s in zip(*columns, strict=True)]
    rows = [row for row in rows if row[2]]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in sorted(picked.tolist())]


def ndcg(ranked: list[str], gains: dict[str, float], k: int = 10) -> float:
    dcg = sum(gains.get(item, 0.0) / math.log2(r + 2) for r, item in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    best = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    return dcg / best if best else 0.0


def quality(
    target: str, rows: list[tuple[str, str, dict[str, float]]], query: bool
) -> dict[str, float]:
    scores = []
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RankerStub(channel)
        for user, text, gains in rows:
            request = pb.RankRequest(
                user_id=user, query=text if query else "", top_k=10, exclude_interacted=False
            )
            ids = [i.item_id for page in stub.Rank(request, timeout=30) for i in page.items]
            scores.append(ndcg(ids, gains))
    values = np.asarray(scores)
    return {"ndcg@10": float(values.mean()), "se": float(values.std() / math.sqrt(len(values)))}


def serve(home: Path, env: dict[str, str]) -> tuple[list[str], str, dict[str, str]]:
    port = free_port("127.0.0.1")
    command = [*SHOPRANK, "serve", "--home", str(home), "--port", str(port), "--processes", "1"]
    return command, f"127.0.0.1:{port}", dict(os.environ, HF_HUB_OFFLINE="1", **env)


def cosine_spread(workspace: Workspace) -> dict[str, float]:
    """Cosines of each category's name with items in it and with items outside it."""
    from features import taxonomy
    from features.text_encoder import TextEncoder

    catalog = pq.read_table(workspace.catalog_path, columns=["item_id", "attributes"])
    (snapshot,) = sorted(workspace.item_text_path.glob("*.parquet"))[-1:]
    table = pq.read_table(snapshot)
    vectors = dict(zip(table["item_id"].to_pylist(), table["text_vector"].to_pylist(), strict=True))
    of = {
        i: a.split("|")[0].removeprefix("category=")
        for i, a in zip(
            catalog["item_id"].to_pylist(), catalog["attributes"].to_pylist(), strict=True
        )
    }
    encoder = TextEncoder(workspace.text_encoder_dir).load()
    inside, outside = [], []
    items = list(vectors)[:2000]
    matrix = np.asarray([vectors[i] for i in items], np.float32)
    for c in range(len(taxonomy.TAXONOMY)):
        kind = taxonomy.category(c)
        for text in (kind.name, *kind.synonyms):
            cos = matrix @ encoder.encode([text])[0]
            mine = np.array([of[i] == taxonomy.token(kind.name) for i in items])
            inside.extend(cos[mine].tolist())
            outside.extend(cos[~mine].tolist())
    return {
        "in_category_p10": float(np.percentile(inside, 10)),
        "in_category_median": float(np.median(inside)),
        "outside_median": float(np.median(outside)),
        "outside_p90": float(np.percentile(outside, 90)),
        "outside_p99": float(np.percentile(outside, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--fusion-model", help="the version the fusion cases serve")
    parser.add_argument("--query-model", help="a query-aware version: the ranker case")
    args = parser.parse_args()
    workspace = Workspace(args.home)
    current = registry.current_version(workspace.models_dir)
    try:
        run(args, workspace)
    finally:
        if current is not None:
            registry.set_current(workspace.models_dir, current)


def serving(workspace: Workspace, version: str | None) -> None:
    if version is not None:
        registry.set_current(workspace.models_dir, version)


def run(args: argparse.Namespace, workspace: Workspace) -> None:
    train = searches(workspace.events_path, args.events, seed=1)
    heldout = searches(workspace.heldout_path, args.events, seed=2)
    result: dict[str, object] = {"cosines": cosine_spread(workspace)}
    quality_rows: dict[str, dict[str, object]] = {}
    cases = {"no query": 1.0, **SHARES}
    if args.query_model:
        cases["hybrid in the ranker"] = DEFAULT_LEXICAL_SHARE
    for name, share in cases.items():
        serving(
            workspace, args.query_model if name == "hybrid in the ranker" else args.fusion_model
        )
        command, target, env = serve(args.home, {"SHOPRANK_LEXICAL_SHARE": str(share)})
        with running([command], target, env):
            uses = name != "no query"
            quality_rows[name] = {
                "train": quality(target, train, uses),
                "heldout": quality(target, heldout, uses),
            }
        print(name, json.dumps(quality_rows[name]), flush=True)
    result["quality"] = quality_rows
    hybrid = [n for n in quality_rows if n.startswith("hybrid 0")]
    chosen = max(hybrid, key=lambda n: quality_rows[n]["train"]["ndcg@10"])  # type: ignore[index]
    result["chosen_on_train"] = chosen

    # 200 held-out searches, cycled: the cached server has seen each once (warm-up).
    requests = [pb.RankRequest(user_id=u, query=q, top_k=20) for u, q, _ in heldout[:200]]
    latency: dict[str, object] = {}
    serving(workspace, args.fusion_model)
    setups = {
        "bm25 alone (baseline)": {"SHOPRANK_LEXICAL_SHARE": "1"},
        "hybrid, cache hits": {"SHOPRANK_LEXICAL_SHARE": "0.5"},
        "hybrid, cache misses": {"SHOPRANK_LEXICAL_SHARE": "0.5", "SHOPRANK_QUERY_CACHE_SIZE": "0"},
    }
    for name, env in setups.items():
        command, target, full = serve(args.home, env)
        with running([command], target, full):
            loadtest.measure(target, requests, 4.0, 1, warmup=0.0)  # each query seen once
            latency[name] = loadtest.brief(loadtest.measure(target, requests, args.duration, 1))
        print(name, json.dumps(latency[name]), flush=True)
    base = latency["bm25 alone (baseline)"]
    for name in ("hybrid, cache hits", "hybrid, cache misses"):
        mine = latency[name]
        latency[f"{name}: p50 ratio"] = mine["p50_ms"] / base["p50_ms"]  # type: ignore[index]
        latency[f"{name}: p99 ratio"] = mine["p99_ms"] / base["p99_ms"]  # type: ignore[index]
    result["latency"] = latency
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
