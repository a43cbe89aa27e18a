"""Ranking quality measured through a running server: the number users get.

Every evaluated user sends one Rank with its held-out positives among sampled
negatives (items the user never touched, seeded), in a seeded shuffled order,
with explain on. The served order scores the full ranker; the parts of the
same response score the baselines (popularity: the bias term, which orders a
user's candidates by item bias; similarity x bias; the embeddings' dot
product), each sorted stably in the order sent, so ties fall by chance.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from features.schema import POSITIVE_EVENTS
from features.workspace import Workspace
from server.clients.channels import Access
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from training.metrics import hit_rate, ndcg, ranked_relevance
from training.ncf_eval import NEGATIVES, sample_negatives

K = 10


@dataclass(frozen=True)
class Group:
    user: str
    candidates: list[str]
    positives: frozenset[str]


def groups_for(
    workspace: Workspace, negatives: int = NEGATIVES, seed: int = 0, max_users: int = 0
) -> list[Group]:
    """One group per user with held-out positives, candidates shuffled (seeded)."""
    heldout = pq.read_table(workspace.heldout_path, columns=["user_id", "item_id", "event_type"])
    heldout_rows = [r for r in heldout.to_pylist() if r["event_type"] in POSITIVE_EVENTS]
    positives: dict[str, set[str]] = {}
    for row in heldout_rows:
        positives.setdefault(row["user_id"], set()).add(row["item_id"])
    users = sorted(positives)
    if max_users and len(users) > max_users:
        rng = np.random.default_rng(seed)
        users = sorted(rng.choice(users, size=max_users, replace=False).tolist())
    touched = _touched(workspace, set(users))
    for user in users:
        touched.setdefault(user, set()).update(positives[user])
    catalog = sorted(pq.read_table(workspace.catalog_path, columns=["item_id"])[0].to_pylist())
    drawn = sample_negatives({u: touched[u] for u in users}, catalog, negatives, seed)
    groups = []
    for user in users:
        candidates = sorted(positives[user]) + drawn[user]
        order = np.random.default_rng([seed, zlib.crc32(user.encode())]).permutation(
            len(candidates)
        )
        groups.append(Group(user, [candidates[i] for i in order], frozenset(positives[user])))
    return groups


def _touched(workspace: Workspace, users: set[str]) -> dict[str, set[str]]:
    events = pq.read_table(workspace.events_path, columns=["user_id", "item_id"])
    touched: dict[str, set[str]] = {}
    for user, item in zip(
        events["user_id"].to_pylist(), events["item_id"].to_pylist(), strict=True
    ):
        if user in users:
            touched.setdefault(user, set()).add(item)
    return touched


async def rank_all(
    target: str,
    groups: list[Group],
    concurrency: int = 8,
    timeout: float = 30.0,
    access: Access | None = None,
) -> list[list[pb.RankedItem]]:
    """The full ranking (with parts) of every group, through the server."""
    results: list[list[pb.RankedItem]] = [[] for _ in groups]
    queue = iter(range(len(groups)))
    access = access or Access()
    async with access.aio_channel(target) as channel:
        stub = pb_grpc.RankerStub(channel)
        metadata = access.metadata or None

        async def worker() -> None:
            for g in queue:
                request = pb.RankRequest(
                    user_id=groups[g].user, candidate_item_ids=groups[g].candidates, explain=True
                )
                async for page in stub.Rank(request, timeout=timeout, metadata=metadata):
                    results[g].extend(page.items)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def _metrics(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    relevance = ranked_relevance(scores, labels)
    return hit_rate(relevance, K), ndcg(relevance, K)


def score_table(
    groups: list[Group], rankings: list[list[pb.RankedItem]]
) -> dict[str, dict[str, float]]:
    """Mean HR@10 and NDCG@10 per scorer over the groups."""
    rows: dict[str, list[tuple[float, float]]] = {}
    with_embeddings = any(i.parts.embedding_score for r in rankings for i in r)
    for group, ranked in zip(groups, rankings, strict=True):
        by_id = {item.item_id: item for item in ranked}
        items = [by_id[c] for c in group.candidates]  # back in the order sent
        labels = np.array([1.0 if c in group.positives else 0.0 for c in group.candidates])
        served_rank = np.array([item.rank for item in items], dtype=np.float64)
        scorers = {
            "popularity": np.array([i.parts.bias for i in items]),
            "similarity x bias": np.array([i.parts.heuristic_score for i in items]),
            "ranker (served)": -served_rank,
        }
        if with_embeddings:
            scorers["embeddings"] = np.array([i.parts.embedding_score for i in items])
        for name, scores in scorers.items():
            rows.setdefault(name, []).append(_metrics(scores, labels))
    return {
        name: {
            "hr@10": float(np.mean([r[0] for r in v])),
            "ndcg@10": float(np.mean([r[1] for r in v])),
            "users": float(len(v)),
        }
        for name, v in rows.items()
    }


def format_table(table: dict[str, dict[str, float]]) -> str:
    lines = [f"{'scorer':<20} {'HR@10':>7} {'NDCG@10':>8}  users"]
    for name, m in table.items():
        lines.append(f"{name:<20} {m['hr@10']:>7.4f} {m['ndcg@10']:>8.4f}  {int(m['users'])}")
    return "\n".join(lines)


def write_outputs(table: dict[str, dict[str, float]], dataset: str, json_path: Path) -> Path | None:
    """The table as JSON, and beside it a PNG bar chart; returns the chart's path, or
    None where matplotlib (the `train` extra) is not installed."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"dataset": dataset, "k": K, "scorers": table}, indent=2))
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt

    names = list(table)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, [table[n]["hr@10"] for n in names], 0.4, label="HR@10")
    ax.bar(x + 0.2, [table[n]["ndcg@10"] for n in names], 0.4, label="NDCG@10")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1)
    ax.set_title(f"{dataset}: ranking quality through the server")
    ax.legend()
    fig.tight_layout()
    png = json_path.with_suffix(".png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
