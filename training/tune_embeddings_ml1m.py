"""Research script: tune training.embeddings on MovieLens-1M under the NCF protocol.

Target (issue 4): HR@10 >= 0.730 and NDCG@10 >= 0.447, NeuMF with pre-training (He et
al. 2017). Tune on `--split validation` (each user's latest *training* rating held out,
training on the rest), so the test split is read only to report a chosen config:

    .venv/bin/python -m training.tune_embeddings_ml1m --home /tmp/ml --split validation
    .venv/bin/python -m training.tune_embeddings_ml1m --home /tmp/ml --split test --dim 128

Each run appends one JSON line (config, metrics, timings) to --log.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.movielens import leave_one_out
from features.workspace import Workspace
from training.embeddings import EmbeddingConfig, Embeddings, train_embeddings
from training.ncf_eval import K, hit_rate_ndcg, sample_negatives


@dataclass(frozen=True)
class Split:
    """Training pairs and one held-out item per user, all as indices."""

    train_users: np.ndarray  # int64 [N]
    train_items: np.ndarray  # int64 [N]
    heldout_users: np.ndarray  # int64 [U]
    heldout_items: np.ndarray  # int64 [U]
    n_users: int
    n_items: int

    def rated_by_user(self) -> dict[int, set[int]]:
        rated: dict[int, set[int]] = {int(u): set() for u in self.heldout_users}
        for user, item in zip(self.train_users.tolist(), self.train_items.tolist(), strict=True):
            rated.setdefault(user, set()).add(item)
        for user, item in zip(
            self.heldout_users.tolist(), self.heldout_items.tolist(), strict=True
        ):
            rated[user].add(item)
        return rated


def load(home: Path, split: str) -> Split:
    """The test split as prepared, or a validation split carved out of its training data.

    The candidate pool is every item anyone rated (3,706 on ML-1M, as in the NCF data),
    not the whole catalogue: unrated titles would be free, untrained negatives.
    """
    workspace = Workspace(home)
    events = pq.read_table(workspace.events_path, columns=["user_id", "item_id", "ts"])
    heldout = pq.read_table(workspace.heldout_path, columns=["user_id", "item_id", "ts"])
    users = sorted(
        set(events["user_id"].to_pylist()) | set(heldout["user_id"].to_pylist()), key=int
    )
    items = sorted(set(events["item_id"].to_pylist()) | set(heldout["item_id"].to_pylist()))
    user_index = {user: i for i, user in enumerate(users)}
    item_index = {item: i for i, item in enumerate(items)}

    def indices(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        u = np.array([user_index[x] for x in table["user_id"].to_pylist()], dtype=np.int64)
        i = np.array([item_index[x] for x in table["item_id"].to_pylist()], dtype=np.int64)
        return u, i

    train_u, train_i = indices(events)
    if split == "test":
        held_u, held_i = indices(heldout)
    else:
        last = leave_one_out(events["user_id"].combine_chunks(), events["ts"].combine_chunks())
        held_u, held_i = train_u[last], train_i[last]
        train_u, train_i = train_u[~last], train_i[~last]
    return Split(train_u, train_i, held_u, held_i, len(users), len(items))


def evaluate(
    embeddings: Embeddings, split: Split, negatives: dict[int, list[int]], seed: int
) -> tuple[float, float]:
    users = split.heldout_users
    negative_items = np.array([negatives[int(u)] for u in users], dtype=np.int64)
    scores = embeddings.score(users, np.column_stack([split.heldout_items, negative_items]))
    return hit_rate_ndcg(scores[:, 0], scores[:, 1:], K, seed)


def spread_point(embeddings: Embeddings, split: Split, seed: int) -> tuple[float, float]:
    """The metrics under another seed's negatives: how much the sample alone moves them."""
    negatives = sample_negatives(split.rated_by_user(), list(range(split.n_items)), seed=seed)
    return evaluate(embeddings, split, negatives, seed)


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, EmbeddingConfig]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--home", type=Path, default=Path("/tmp/ml"))
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--eval-seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=0, help="epochs; 0 = at the end only")
    parser.add_argument("--log", type=Path, default=Path("/tmp/ml/tune_embeddings.jsonl"))
    parser.add_argument("--note", default="")
    parser.add_argument("--save", type=Path, help="write the embeddings here (.npz)")
    parser.add_argument(
        "--spread-seeds", type=int, default=0, help="also evaluate with this many other seeds"
    )
    defaults = EmbeddingConfig()
    for field in fields(EmbeddingConfig):
        value = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"))
        else:
            parser.add_argument(flag, type=type(value))
    args = parser.parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(EmbeddingConfig)
        if getattr(args, f.name) is not None
    }
    return args, EmbeddingConfig(**{**asdict(defaults), **overrides})


def main(argv: Sequence[str] | None = None) -> int:
    args, config = parse(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    split = load(args.home, args.split)
    negatives = sample_negatives(
        split.rated_by_user(), list(range(split.n_items)), seed=args.eval_seed
    )
    print(
        f"{args.split}: {split.n_users} users, {split.n_items} items, "
        f"{split.train_users.size} training pairs; data {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    print(config, flush=True)
    curve: list[dict[str, Any]] = []
    eval_seconds = 0.0

    def on_epoch(epoch: int, embeddings: Embeddings) -> None:
        nonlocal eval_seconds
        if args.eval_every and (epoch % args.eval_every == 0 or epoch == config.epochs):
            eval_started = time.perf_counter()
            hr, nd = evaluate(embeddings, split, negatives, args.eval_seed)
            eval_seconds += time.perf_counter() - eval_started
            curve.append({"epoch": epoch, "hr": round(hr, 4), "ndcg": round(nd, 4)})
            print(f"  epoch {epoch}: HR@{K} {hr:.4f}  NDCG@{K} {nd:.4f}", flush=True)

    train_started = time.perf_counter()
    embeddings = train_embeddings(
        split.train_users,
        split.train_items,
        split.n_users,
        split.n_items,
        config,
        lambda line: print(line, flush=True),
        on_epoch=on_epoch,
    )
    train_seconds = time.perf_counter() - train_started - eval_seconds
    hr, nd = evaluate(embeddings, split, negatives, args.eval_seed)
    total = time.perf_counter() - started
    print(
        f"{args.split} HR@{K} {hr:.4f}  NDCG@{K} {nd:.4f}  over {split.heldout_users.size} users; "
        f"training {train_seconds:.0f}s (without per-epoch evaluation), total {total:.0f}s",
        flush=True,
    )
    spread = [spread_point(embeddings, split, seed) for seed in range(1, args.spread_seeds + 1)]
    if spread:
        hrs, ndcgs = np.array([hr for hr, _ in spread]), np.array([nd for _, nd in spread])
        print(
            f"other negative samples (seeds 1..{len(spread)}): "
            f"HR@{K} {hrs.mean():.4f} +- {hrs.std():.4f} [{hrs.min():.4f}, {hrs.max():.4f}]  "
            f"NDCG@{K} {ndcgs.mean():.4f} +- {ndcgs.std():.4f}",
            flush=True,
        )
    if args.save:
        np.savez(
            args.save,
            users=embeddings.users,
            items=embeddings.items,
            item_bias=np.array([]) if embeddings.item_bias is None else embeddings.item_bias,
        )
    record = {
        "split": args.split,
        "eval_seed": args.eval_seed,
        "note": args.note,
        "config": asdict(config),
        "hr": round(hr, 4),
        "ndcg": round(nd, 4),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(total, 1),
        "curve": curve,
        "spread": [[round(hr, 4), round(nd, 4)] for hr, nd in spread],
    }
    with args.log.open("a") as log:
        log.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
