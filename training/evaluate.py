"""Offline evaluation on the held-out interactions, against the baselines.

Each held-out user's positives are ranked among `negatives` items sampled
(seeded) from those the user never touched, using the features of the newest
snapshot, which is computed from training events only. Candidates are
shuffled, so ties cannot favour the positives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.schema import POSITIVE_EVENTS
from features.workspace import Workspace

if TYPE_CHECKING:
    from training.publish import EmbeddingLookup
from features.model_inputs import QUERY_INPUTS, assemble
from features.scoring import combined_bias, heuristic_score, rowwise_cosine
from training.metrics import auc, hit_rate, ndcg, ranked_relevance

K = 10


@dataclass(frozen=True)
class EvalSet:
    offsets: np.ndarray  # int64 [G + 1]: group g is rows offsets[g]:offsets[g + 1]
    labels: np.ndarray  # float32 [N]
    features: np.ndarray  # float32 [N, F], the model's inputs
    similarity: np.ndarray  # float32 [N]
    bias: np.ndarray  # float32 [N]
    item_bias: np.ndarray  # float32 [N]
    embedding_score: np.ndarray | None = None  # float32 [N], when embeddings were learned
    # Every embedding learner's dot product [N], by name (training.peers), side by side.
    peer_scores: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def groups(self) -> int:
        return int(self.offsets.size - 1)


Scorer = Callable[[EvalSet], np.ndarray]

BASELINES: Mapping[str, Scorer] = {
    "popularity": lambda s: s.item_bias,
    "similarity x bias": lambda s: heuristic_score(s.similarity, s.bias),
}


def embedding_scores(eval_set: EvalSet) -> np.ndarray:
    if eval_set.embedding_score is None:
        raise ValueError("this evaluation set has no embeddings")
    return eval_set.embedding_score


def baselines(eval_set: EvalSet) -> dict[str, Scorer]:
    """The baselines that apply: embeddings alone only where they were learned."""
    scorers = dict(BASELINES)
    if eval_set.embedding_score is not None:
        scorers["embeddings"] = embedding_scores
    for name in eval_set.peer_scores:
        scorers[name] = partial(peer_scores, name=name)
    return scorers


def peer_scores(eval_set: EvalSet, name: str) -> np.ndarray:
    return eval_set.peer_scores[name]


def latest_rows(path: str, key: str) -> pd.DataFrame:
    """The newest feature row of each entity, indexed by its key.

    Snapshots are cumulative (each holds every entity seen so far), so the
    newest file is enough: reading the whole history of a large catalogue
    would hold every snapshot's vectors in memory at once.
    """
    files = sorted(Path(path).glob("*.parquet"))
    frame = pq.read_table(files[-1] if files else path).to_pandas()
    frame = frame.sort_values("event_timestamp", kind="stable").drop_duplicates(key, keep="last")
    return frame.set_index(key)


def candidate_groups(
    workspace: Workspace, known_users: pd.Index, negatives: int, max_users: int, seed: int
) -> list[tuple[str, list[str], int]]:
    """(user, candidates, positives count) per held-out user with features."""
    heldout = pq.read_table(workspace.heldout_path).to_pandas()
    heldout = heldout[heldout["event_type"].isin(POSITIVE_EVENTS)]
    heldout = heldout[heldout["user_id"].isin(known_users)]
    seen = pq.read_table(workspace.events_path, columns=["user_id", "item_id"]).to_pandas()
    seen_by_user = pd.concat([seen, heldout[["user_id", "item_id"]]]).groupby("user_id")["item_id"]
    touched = {user: set(items) for user, items in seen_by_user}
    catalog = pq.read_table(workspace.catalog_path, columns=["item_id"])["item_id"].to_numpy()
    rng = np.random.default_rng(seed)
    users = np.array(sorted(heldout["user_id"].unique()))
    if users.size > max_users:
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    positives = heldout.groupby("user_id")["item_id"].unique()
    groups = []
    for user in users:
        mine = list(positives[user])
        drawn = sample_unseen(rng, catalog, touched[user], negatives)
        candidates = mine + drawn
        order = rng.permutation(len(candidates))
        groups.append((str(user), [candidates[i] for i in order], len(mine)))
    return groups


def sample_unseen(
    rng: np.random.Generator, catalog: np.ndarray, seen: set[str], n: int
) -> list[str]:
    """n distinct catalogue items not in `seen`, by rejection: O(n), not O(catalogue)."""
    if catalog.size - len(seen) <= 2 * n:  # a small remainder: filter instead
        pool = [item for item in catalog.tolist() if item not in seen]
        return [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
    drawn: dict[str, None] = {}
    while len(drawn) < n:
        for i in rng.integers(0, catalog.size, size=2 * n).tolist():
            item = catalog[i]
            if item not in seen and len(drawn) < n:
                drawn[item] = None
    return list(drawn)


def build_eval_set(
    workspace: Workspace,
    negatives: int = 99,
    max_users: int = 2000,
    seed: int = 0,
    lookup: EmbeddingLookup | None = None,
    peers: Mapping[str, EmbeddingLookup] | None = None,
    query: bool = False,
) -> EvalSet:
    users = latest_rows(str(workspace.user_features_path), "user_id")
    items = latest_rows(str(workspace.item_features_path), "item_id")
    groups = candidate_groups(workspace, users.index, negatives, max_users, seed)
    positives = heldout_positive_pairs(workspace)
    user_col = [u for u, cands, _ in groups for _ in cands]
    item_col = [i for _, cands, _ in groups for i in cands]
    labels = np.array(
        [1.0 if (u, i) in positives else 0.0 for u, i in zip(user_col, item_col, strict=True)],
        dtype=np.float32,
    )
    u = users.loc[user_col]
    it = items.reindex(item_col)
    user_vectors = np.stack(u["user_vector"].to_numpy()).astype(np.float32)
    item_vectors = np.stack(it["item_vector"].to_numpy()).astype(np.float32)
    similarity = rowwise_cosine(user_vectors, item_vectors)
    item_bias = it["item_bias"].to_numpy(np.float32)
    bias = combined_bias(u["user_bias"].to_numpy(np.float32), item_bias)
    embedded = None
    if lookup is not None:
        embedded = lookup.parts(np.asarray(user_col), np.asarray(item_col))
    features = assemble(
        similarity,
        bias,
        user_vectors,
        u["user_bias"].to_numpy(np.float32),
        u["user_activity"].to_numpy(np.float32),
        item_vectors,
        item_bias,
        it["item_conversion"].to_numpy(np.float32),
        it["item_price"].to_numpy(np.float32),
        embedded,
        np.zeros((1, len(QUERY_INPUTS)), np.float32) if query else None,  # no query here
    )
    offsets = np.cumsum([0] + [len(c) for _, c, _ in groups])
    embedding_score = None if embedded is None else embedded[0]
    ids = np.asarray(user_col), np.asarray(item_col)
    peer_scores = {name: peer.parts(*ids)[0] for name, peer in (peers or {}).items()}
    return EvalSet(
        offsets, labels, features, similarity, bias, item_bias, embedding_score, peer_scores
    )


def heldout_positive_pairs(workspace: Workspace) -> set[tuple[str, str]]:
    heldout = pq.read_table(workspace.heldout_path).to_pandas()
    heldout = heldout[heldout["event_type"].isin(POSITIVE_EVENTS)]
    return set(zip(heldout["user_id"], heldout["item_id"], strict=True))


def evaluate(eval_set: EvalSet, scorers: Mapping[str, Scorer]) -> dict[str, dict[str, float]]:
    """Mean NDCG@10, HR@10 and AUC over users, per scorer."""
    table: dict[str, dict[str, float]] = {}
    for name, scorer in scorers.items():
        scores = scorer(eval_set)
        rows = []
        for g in range(eval_set.groups):
            lo, hi = eval_set.offsets[g], eval_set.offsets[g + 1]
            relevance = ranked_relevance(scores[lo:hi], eval_set.labels[lo:hi])
            group_auc = auc(scores[lo:hi], eval_set.labels[lo:hi])
            rows.append((ndcg(relevance, K), hit_rate(relevance, K), group_auc))
        means = np.nanmean(np.array(rows), axis=0) if rows else np.full(3, np.nan)
        table[name] = {"ndcg@10": float(means[0]), "hr@10": float(means[1]), "auc": float(means[2])}
    return table


def format_table(table: Mapping[str, Mapping[str, float]]) -> str:
    width = max([20, *(len(name) for name in table)])
    lines = [f"{'scorer':<{width}} {'NDCG@10':>8} {'HR@10':>8} {'AUC':>8}"]
    for name, m in table.items():
        lines.append(f"{name:<{width}} {m['ndcg@10']:>8.4f} {m['hr@10']:>8.4f} {m['auc']:>8.4f}")
    return "\n".join(lines)
