"""Retrieval and search benchmark: shoprank's catalogue index and server, each
against its baseline in the same run.

    .venv/bin/python bench/retrieval.py --homes H100K,H1M [--duration 10]
        [--movielens HOME] [--libraries 200000]

For each trained synthetic workspace in --homes (build them with `shoprank
pipeline --dataset synthetic --items 100000` and `--items 1000000`):
  1. recall@100 and @500 of the served vector indexes (HNSW past the exact bound)
     against exact search, over 200 users' own vectors: the embedding index and
     the interest index, as the server builds them;
  2. through `shoprank serve --processes 1`: Rank with no candidates (retrieval),
     top_k 20, p50 and p99 at concurrency 1 and 32, against reranking 100 given
     candidates (the path that existed before, Metarank's documented case);
  3. search: a query of catalogue words with no candidates (BM25 retrieval), p50
     and p99 at concurrency 1, against the same retrieval without a query.
--movielens HOME (a MovieLens-1M workspace, features materialized): recall@100 of
each user's held-out rating through the server (no candidates, rated items left
out), against a popularity retriever that leaves out the rated items too.
--libraries N: faiss-cpu, hnswlib and usearch side by side on N clustered vectors
(HNSW, M 32, inner product): build time, query time and recall@100 against exact.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from serve import SHOPRANK, running  # bench/ is on sys.path when run as a script

from features.workspace import Workspace
from server.clients.loadtest import command as loadtest
from server.processes import free_port
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc


def users_of(workspace: Workspace, n: int, seed: int) -> list[str]:
    users = pq.read_table(workspace.events_path, columns=["user_id"])["user_id"].unique()
    rng = np.random.default_rng(seed)
    return [str(u) for u in rng.choice(np.asarray(users.to_pylist()), size=n)]


def query_words(workspace: Workspace, n: int, seed: int) -> list[str]:
    """Queries of two words of random items' text: a category and a brand or tag."""
    from features.text import item_text

    table = pq.read_table(workspace.catalog_path, columns=["title", "attributes"])
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, table.num_rows, size=n)
    titles, attributes = table["title"].to_pylist(), table["attributes"].to_pylist()
    queries = []
    for row in rows.tolist():
        words = item_text(None, attributes[row]).split() or titles[row].split()
        queries.append(" ".join(rng.choice(words, size=min(2, len(words)), replace=False)))
    return queries


def index_recall(home: Path) -> dict[str, object]:
    """The served indexes' recall against exact search, built as the server builds them."""
    from server.app import index_settings, load
    from server.config import Settings

    settings = Settings(home=home)
    started = time.perf_counter()
    loaded = load(settings)
    build = time.perf_counter() - started
    catalogue = loaded.catalogue.current if loaded.catalogue else None
    assert catalogue is not None
    feast = loaded.features.feast  # type: ignore[attr-defined]
    users = feast.users(users_of(Workspace(home), 200, seed=5))
    result: dict[str, object] = {
        "items": len(catalogue),
        "load_and_index_s": build,
        "exact_max": index_settings(settings).exact_max_items,
    }
    for name, index, queries in (
        ("interest", catalogue.interest, [u.vector for u in users if u.known]),
        ("embedding", catalogue.embedding, [u.embedding for u in users if u.known]),
    ):
        if index is None or index.exact:
            result[name] = "exact" if index is not None else "none"
            continue
        recalls: dict[int, list[float]] = {100: [], 500: []}
        timings = []
        for query in queries:
            if query is None or not np.any(query):
                continue
            exact = index.matrix @ query
            for k in recalls:
                truth = set(np.argpartition(-exact, k)[:k].tolist())
                began = time.perf_counter()
                found = index.search(query, k).rows
                timings.append(time.perf_counter() - began)
                recalls[k].append(len(truth & set(found.tolist())) / k)
        result[name] = {
            "recall@100": float(np.mean(recalls[100])),
            "recall@500": float(np.mean(recalls[500])),
            "search_ms_mean": float(np.mean(timings)) * 1e3,
        }
    return result


def served(home: Path, duration: float) -> dict[str, object]:
    workspace = Workspace(home)
    users = users_of(workspace, 300, seed=1)
    items = pq.read_table(workspace.catalog_path, columns=["item_id"])["item_id"].to_numpy()
    rng = np.random.default_rng(2)
    retrieval = [pb.RankRequest(user_id=u, top_k=20) for u in users]
    given = [
        pb.RankRequest(
            user_id=u, candidate_item_ids=rng.choice(items, 100, replace=False), top_k=20
        )
        for u in users
    ]
    queries = query_words(workspace, 300, seed=3)
    search = [
        pb.RankRequest(user_id=u, top_k=20, query=q) for u, q in zip(users, queries, strict=True)
    ]
    port = free_port("127.0.0.1")
    target = f"127.0.0.1:{port}"
    serve = [*SHOPRANK, "serve", "--home", str(home), "--port", str(port), "--processes", "1"]
    result: dict[str, object] = {}
    with running([serve], target, dict(os.environ, HF_HUB_OFFLINE="1")):
        with grpc.insecure_channel(target) as channel:  # every kind answers before timing
            stub = pb_grpc.RankerStub(channel)
            for request in (retrieval[0], given[0], search[0]):
                assert list(stub.Rank(request, timeout=30))
        for concurrency in (1, 32):
            for name, requests in (("retrieve", retrieval), ("given_100", given)):
                body = loadtest.measure(target, requests, duration, concurrency, connections=8)
                result[f"{name}_c{concurrency}"] = loadtest.brief(body)
        body = loadtest.measure(target, search, duration, 1)
        result["search_c1"] = loadtest.brief(body)
    for c in (1, 32):
        mine, base = result[f"retrieve_c{c}"], result[f"given_100_c{c}"]
        result[f"ratio_p50_c{c}"] = mine["p50_ms"] / base["p50_ms"]  # type: ignore[index]
        result[f"ratio_p99_c{c}"] = mine["p99_ms"] / base["p99_ms"]  # type: ignore[index]
    return result


def movielens_recall(home: Path, k: int = 100) -> dict[str, object]:
    """Hit rate of the held-out rating in the server's top k, and in popularity's."""
    workspace = Workspace(home)
    events = ds.dataset([str(f) for f in workspace.event_files()], format="parquet")
    rated = events.to_table(columns=["user_id", "item_id"])
    held = pq.read_table(workspace.heldout_path, columns=["user_id", "item_id"])
    by_user: dict[str, set[str]] = {}
    for user, item in zip(rated["user_id"].to_pylist(), rated["item_id"].to_pylist(), strict=True):
        by_user.setdefault(user, set()).add(item)
    counts = pc.value_counts(rated["item_id"]).to_pylist()
    popular = [c["values"] for c in sorted(counts, key=lambda c: (-c["counts"], c["values"]))]
    port = free_port("127.0.0.1")
    target = f"127.0.0.1:{port}"
    serve = [*SHOPRANK, "serve", "--home", str(home), "--port", str(port), "--processes", "1"]
    hits = {"shoprank": 0, "popularity": 0}
    users = 0
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with running([serve], target, env), grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RankerStub(channel)
        for user, item in zip(
            held["user_id"].to_pylist(), held["item_id"].to_pylist(), strict=True
        ):
            seen = by_user.get(user, set())
            request = pb.RankRequest(user_id=user, top_k=k, retrieval_size=max(k, 200))
            ranked = {i.item_id for page in stub.Rank(request, timeout=30) for i in page.items}
            hits["shoprank"] += item in ranked
            baseline = [title for title in popular[: k + len(seen)] if title not in seen][:k]
            hits["popularity"] += item in baseline
            users += 1
    recall = {name: hit / users for name, hit in hits.items()}
    return {
        "users": users,
        f"recall@{k}": recall,
        "ratio": recall["shoprank"] / recall["popularity"],
        "standard_error": {n: (r * (1 - r) / users) ** 0.5 for n, r in recall.items()},
    }


def libraries(n: int, dim: int = 64, k: int = 100) -> dict[str, object]:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(200, dim)).astype(np.float32)
    data = (centers[rng.integers(0, 200, n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)
    queries = (centers[rng.integers(0, 200, 200)] + 0.5 * rng.normal(size=(200, dim))).astype(
        np.float32
    )
    began = time.perf_counter()
    truth = [set(np.argpartition(-(data @ q), k)[:k].tolist()) for q in queries]
    results: dict[str, object] = {"exact_ms": (time.perf_counter() - began) / len(queries) * 1e3}

    def recall(found: list[np.ndarray]) -> float:
        return float(
            np.mean([len(t & set(f.tolist())) / k for t, f in zip(truth, found, strict=True)])
        )

    import faiss
    import hnswlib
    from usearch.index import Index

    def timed(build, search) -> dict[str, float]:  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        index = build()
        built = time.perf_counter() - began
        began = time.perf_counter()
        found = [search(index, q) for q in queries]
        return {
            "build_s": built,
            "query_ms": (time.perf_counter() - began) / len(queries) * 1e3,
            "recall@100": recall(found),
        }

    def faiss_build():  # type: ignore[no-untyped-def]
        faiss.omp_set_num_threads(2)
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 100
        index.add(data)
        index.hnsw.efSearch = 200
        faiss.omp_set_num_threads(1)
        return index

    def hnsw_build():  # type: ignore[no-untyped-def]
        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(max_elements=n, M=32, ef_construction=100)
        index.set_num_threads(2)
        index.add_items(data)
        index.set_ef(200)
        index.set_num_threads(1)
        return index

    def usearch_build():  # type: ignore[no-untyped-def]
        index = Index(
            ndim=dim, metric="ip", connectivity=32, expansion_add=100, expansion_search=200
        )
        index.add(np.arange(n), data, threads=2)
        return index

    results["faiss-cpu"] = timed(faiss_build, lambda i, q: i.search(q[None], k)[1][0])
    results["hnswlib"] = timed(hnsw_build, lambda i, q: i.knn_query(q, k)[0][0])
    results["usearch"] = timed(usearch_build, lambda i, q: i.search(q, k, threads=1).keys)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--homes", default="", help="trained synthetic workspaces, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--movielens", type=Path, help="a MovieLens-1M workspace")
    parser.add_argument(
        "--libraries", type=int, default=0, help="compare ANN libraries on N vectors"
    )
    args = parser.parse_args()
    report: dict[str, object] = {}
    if args.libraries:
        report["libraries"] = libraries(args.libraries)
        print(json.dumps(report["libraries"], indent=1), flush=True)
    for home in filter(None, args.homes.split(",")):
        path = Path(home)
        entry = {"index": index_recall(path), "served": served(path, args.duration)}
        report[home] = entry
        print(json.dumps({home: entry}, indent=1), flush=True)
    if args.movielens:
        report["movielens"] = movielens_recall(args.movielens)
        print(json.dumps(report["movielens"], indent=1), flush=True)
    if not report:
        sys.exit("bench/retrieval.py: give --homes, --movielens or --libraries")


if __name__ == "__main__":
    main()
