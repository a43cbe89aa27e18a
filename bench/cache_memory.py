"""RSS of the item cache at growing catalogue sizes, each in a fresh process.

    .venv/bin/python bench/cache_memory.py [--dim 128] [--sizes 100000,250000,500000,1000000]

The reader hands the cache synthetic rows, so this measures the cache's own
memory (contiguous arrays plus the id index), not an online store's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence

import numpy as np

from features.rows import ItemRows
from server.sources.item_cache import ItemFeatureCache


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * 4096 / 2**20


def measure(items: int, dim: int) -> dict[str, float]:
    rng = np.random.default_rng(0)

    def reader(ids: Sequence[str]) -> ItemRows:
        n = len(ids)
        return ItemRows(
            rng.random((n, dim), dtype=np.float32),
            rng.random(n, dtype=np.float32),
            rng.random(n, dtype=np.float32),
            rng.random(n, dtype=np.float32),
            np.ones(n, dtype=bool),
            np.full(n, 1.7e9),
        )

    ids = [f"item_{i:07d}" for i in range(items)]
    before = rss_mib()
    cache = ItemFeatureCache(reader, capacity=items)
    cache.warm(ids)
    after = rss_mib()
    assert len(cache) == items
    return {"items": items, "dim": dim, "rss_mib": after - before}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--sizes", default="100000,250000,500000,1000000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.dim)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--dim", str(args.dim)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout))
    print(f"{'items':>9} {'dim':>4} {'cache RSS MiB':>14} {'bytes/item':>11}")
    for row in rows:
        per_item = row["rss_mib"] * 2**20 / row["items"]
        print(f"{row['items']:>9} {row['dim']:>4} {row['rss_mib']:>14.1f} {per_item:>11.0f}")
    arrays = args.dim * 4 + 3 * 4 + 8 + 1 + 8
    print(f"arrays alone: {arrays} bytes/item; the rest is the id index (dict + str)")


if __name__ == "__main__":
    main()
