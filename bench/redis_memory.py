"""Redis memory per million users and items, as Feast's layout stores them.

    .venv/bin/python bench/redis_memory.py [--home DIR]

Materializes the workspace (bench/serve.py's, built when missing) into a
redis-server of its own with Feast, then reports used_memory's growth (the
whole, the baseline) and MEMORY USAGE of up to 500 sampled user and item
hashes, scaled to a million of each. The item cache's memory is
bench/cache_memory.py's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from serve import build_workspace  # noqa: E402

from features.workspace import Stores, Workspace  # noqa: E402

MIB = 2**20


def redis_memory(workspace: Workspace) -> dict[str, float]:
    import redis

    from features import store
    from tests.services import RedisProcess
    from tests.support import copy_workspace

    scratch = Path(tempfile.mkdtemp(prefix="shoprank-sizing-"))
    server = RedisProcess(scratch / "redis")
    server.start()
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        empty = int(client.info("memory")["used_memory"])
        copy = copy_workspace(workspace, scratch / "home", Stores("redis", server.url))
        store.apply(copy)
        store.materialize(copy)
        used = int(client.info("memory")["used_memory"]) - empty
        users, items, sizes = 0, 0, {"user": [], "item": []}
        for key in client.scan_iter(count=1000):
            kind = "user" if b"user_id" in key else "item"
            if kind == "user":
                users += 1
            else:
                items += 1
            if len(sizes[kind]) < 500:
                sizes[kind].append(int(client.memory_usage(key, samples=0) or 0))
        client.close()
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    user_bytes, item_bytes = float(np.mean(sizes["user"])), float(np.mean(sizes["item"]))
    return {
        "users": users,
        "items": items,
        "used_memory_mib": used / MIB,
        "mib_per_million_users": user_bytes * 1e6 / MIB,
        "mib_per_million_items": item_bytes * 1e6 / MIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=HERE / "out" / "home-sqlite")
    args = parser.parse_args()
    if not (args.home / "models" / "CURRENT").exists():
        build_workspace(args.home, dict(os.environ), 2000, 5000)
    memory = redis_memory(Workspace(args.home))
    print(
        f"redis, {memory['users']:,} users and {memory['items']:,} items materialized by Feast: "
        f"used_memory +{memory['used_memory_mib']:.1f} MiB; "
        f"{memory['mib_per_million_users']:.0f} MiB per million users, "
        f"{memory['mib_per_million_items']:.0f} MiB per million items "
        "(MEMORY USAGE of their hashes)"
    )


if __name__ == "__main__":
    main()
