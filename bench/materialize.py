"""Backfill and materialize throughput, SQLite and Redis, at two data sizes.

    .venv/bin/python bench/materialize.py [--scale 10] [--stores sqlite,redis]

Each stage runs as its own `shoprank` process, so its wall time and peak RSS
(from wait4's rusage) are its own. The larger data set has `--scale` times the
users and items of the smaller, so the table shows how the cost grows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from common import redis_server  # bench/ is on sys.path when run as a script

HERE = Path(__file__).resolve().parent
SHOPRANK = [sys.executable, "-m", "server.cli"]


@dataclass(frozen=True)
class Stage:
    seconds: float
    peak_mib: float


def run_stage(args: list[str], env: dict[str, str]) -> Stage:
    started = time.perf_counter()
    process = subprocess.Popen(
        [*SHOPRANK, *args], env=env, cwd=HERE.parent, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"shoprank {' '.join(args)} failed with {process.returncode}")
    return Stage(time.perf_counter() - started, usage.ru_maxrss / 1024)


def rows(directory: Path) -> int:
    return sum(int(pq.read_metadata(p).num_rows) for p in directory.glob("*.parquet"))


def bench(store: str, users: int, items: int, out: Path) -> dict[str, object]:
    with redis_server() if store == "redis" else contextlib.nullcontext("") as redis:
        env = {**os.environ, "SHOPRANK_ONLINE_STORE": store}
        if redis:
            env["SHOPRANK_REDIS"] = redis
        home = out / f"materialize-{store}-{users}"
        shutil.rmtree(home, ignore_errors=True)
        h = ["--home", str(home)]
        data = ["data", "synthetic", *h, "--users", str(users), "--items", str(items)]
        prepare = run_stage(data, env)
        run_stage(["features", "apply", *h], env)
        backfill = run_stage(["features", "backfill", *h], env)
        materialize = run_stage(["features", "materialize", *h], env)
        marker = json.loads((home / "feature_repo" / "data" / "materialized.json").read_text())
        repo = home / "feature_repo" / "offline"
        backfill_rows = rows(repo / "user_features") + rows(repo / "item_features")
        entities = sum(marker["counts"].values())
        shutil.rmtree(home, ignore_errors=True)
    return {
        "store": store,
        "users": users,
        "items": items,
        "data_s": prepare.seconds,
        "backfill_rows": backfill_rows,
        "backfill_s": backfill.seconds,
        "backfill_rows_per_s": backfill_rows / backfill.seconds,
        "backfill_peak_mib": backfill.peak_mib,
        "materialized_entities": entities,
        "materialize_s": materialize.seconds,
        "materialize_rows_per_s": entities / materialize.seconds,
        "materialize_peak_mib": materialize.peak_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [
        bench(store, args.users * scale, args.items * scale, args.out)
        for store in args.stores.split(",")
        for scale in (1, args.scale)
    ]
    print(
        f"{'store':<7} {'users':>7} {'items':>7} | {'backfill rows':>13} {'s':>6} {'rows/s':>8} "
        f"{'peak MiB':>8} | {'materialized':>12} {'s':>6} {'rows/s':>8} {'peak MiB':>8}"
    )
    for r in results:
        print(
            f"{r['store']:<7} {r['users']:>7} {r['items']:>7} | {r['backfill_rows']:>13} "
            f"{r['backfill_s']:>6.1f} {r['backfill_rows_per_s']:>8.0f} "
            f"{r['backfill_peak_mib']:>8.0f} | {r['materialized_entities']:>12} "
            f"{r['materialize_s']:>6.1f} {r['materialize_rows_per_s']:>8.0f} "
            f"{r['materialize_peak_mib']:>8.0f}"
        )
    print("(each stage's wall time includes ~7 s of importing feast in its process)")
    (args.out / "materialize.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
