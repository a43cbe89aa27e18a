"""Materialization, shoprank's bulk writer against Feast's own, and the backfill,
at 1x, 10x and 100x the default synthetic size.

    .venv/bin/python bench/materialize.py [--sizes 1,10,100] [--stores sqlite,redis]
                                          [--spark-sizes 1]

Per size, one data set and one local backfill (its own `shoprank` process: wall
time and peak RSS from wait4). Then, per store, each writer materializes the
same offline tables into a fresh store (a new SQLite file, or a new
redis-server) in a child process that imports Feast and applies the repo
first: the seconds counted are the materialization's alone. Peak RSS is the
child's, imports included; "import MiB" is its RSS before the
materialization, so the difference is what the materialization itself held.
Each writer runs --repeat times (default 3), interleaved with the other, and the
median run is reported: this machine is noisy. With --spark-sizes, the Spark
backfill runs on the same data beside the local one, both timed as whole commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]
from common import redis_server  # noqa: E402  (bench/ and the repo are on sys.path)

SHOPRANK = [sys.executable, "-m", "server.cli"]
DEFAULT_USERS, DEFAULT_ITEMS = 2000, 1000


@dataclass(frozen=True)
class Stage:
    seconds: float
    peak_mib: float


def run_stage(args: list[str], env: dict[str, str]) -> Stage:
    started = time.perf_counter()
    process = subprocess.Popen(
        [*SHOPRANK, *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"shoprank {' '.join(args)} failed")
    return Stage(time.perf_counter() - started, usage.ru_maxrss / 1024)


def rows(directory: Path) -> int:
    return sum(int(pq.read_metadata(p).num_rows) for p in directory.glob("*.parquet"))


def child(home: Path, writer: str) -> None:
    """In a fresh process: import and apply, then time the materialization alone."""
    from features import store
    from server.config import from_env

    workspace = from_env().workspace
    workspace = type(workspace)(home, workspace.stores)
    store.apply(workspace)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    counts = store.materialize(workspace, writer=writer)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    body = {"seconds": seconds, "entities": sum(counts.values()), "import_mib": before}
    print(json.dumps({**body, "peak_mib": peak}))


def materialize_once(home: Path, shared: Path, store: str, writer: str) -> dict[str, float]:
    """A fresh repo on a fresh store over the shared data and offline tables."""
    run = home / f"{store}-{writer}"
    shutil.rmtree(run, ignore_errors=True)
    (run / "feature_repo").mkdir(parents=True)
    (run / "data").symlink_to(shared / "data")
    (run / "feature_repo" / "offline").symlink_to(shared / "feature_repo" / "offline")
    with redis_server() if store == "redis" else contextlib.nullcontext("") as redis:
        env = {**os.environ, "SHOPRANK_ONLINE_STORE": store}
        if redis:
            env["SHOPRANK_REDIS"] = redis
        command = [sys.executable, __file__, "--child", str(run), "--writer", writer]
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    shutil.rmtree(run, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"{writer} on {store} failed: {done.stderr.strip()[-2000:]}")
    found: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median time, with every run's seconds beside it."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[len(ordered) // 2], "all_seconds": [r["seconds"] for r in runs]}


def bench_size(
    scale: int, stores: list[str], spark: bool, out: Path, writers: list[str], repeat: int
) -> list[dict[str, object]]:
    users, items = DEFAULT_USERS * scale, DEFAULT_ITEMS * scale
    shared = out / f"size-{scale}"
    shutil.rmtree(shared, ignore_errors=True)
    h = ["--home", str(shared)]
    env = dict(os.environ)
    run_stage(["data", "synthetic", *h, "--users", str(users), "--items", str(items)], env)
    run_stage(["features", "apply", *h], env)
    backfill = run_stage(["features", "backfill", *h], env)
    offline = shared / "feature_repo" / "offline"
    offline_rows = rows(offline / "user_features") + rows(offline / "item_features")
    result: dict[str, object] = {
        "scale": scale,
        "users": users,
        "items": items,
        "offline_rows": offline_rows,
        "backfill": asdict(backfill),
    }
    if spark:
        copy = out / f"size-{scale}-spark"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir()
        shutil.copytree(shared / "data", copy / "data")
        result["spark_backfill"] = asdict(
            run_stage(["features", "backfill", "--engine", "spark", "--home", str(copy)], env)
        )
        shutil.rmtree(copy, ignore_errors=True)
    results = []
    for store in stores:
        runs: dict[str, list[dict[str, float]]] = {w: [] for w in writers}
        for _ in range(repeat):  # interleaved, so a noisy minute hits both writers
            for writer in writers:
                runs[writer].append(materialize_once(shared, shared, store, writer))
        timings = {w: median_run(found) for w, found in runs.items()}
        results.append({**result, "store": store, **timings})
        print(line(results[-1]) if len(writers) == 2 else json.dumps(results[-1]), flush=True)
    shutil.rmtree(shared, ignore_errors=True)
    return results


HEADER = (
    f"{'store':<7} {'scale':>5} {'offline rows':>12} {'entities':>8} | "
    f"{'feast s':>8} {'rows/s':>7} {'MiB':>5} | {'shoprank s':>10} {'rows/s':>8} {'MiB':>5} "
    f"(import {'MiB':>3}) | {'ratio':>6} | backfill s, MiB"
)


def line(r: dict[str, object]) -> str:
    feast, ours = r["feast"], r["shoprank"]
    assert isinstance(feast, dict) and isinstance(ours, dict)
    backfill = r["backfill"]
    assert isinstance(backfill, dict)
    feast_rate = feast["entities"] / feast["seconds"]
    our_rate = ours["entities"] / ours["seconds"]
    spark = r.get("spark_backfill")
    spark_text = f"; spark {spark['seconds']:.1f} s" if isinstance(spark, dict) else ""
    return (
        f"{r['store']:<7} {r['scale']:>4}x {r['offline_rows']:>12} {ours['entities']:>8} | "
        f"{feast['seconds']:>8.2f} {feast_rate:>7.0f} {feast['peak_mib']:>5.0f} | "
        f"{ours['seconds']:>10.2f} {our_rate:>8.0f} {ours['peak_mib']:>5.0f} "
        f"(import {ours['import_mib']:>3.0f}) | {our_rate / feast_rate:>5.1f}x | "
        f"{backfill['seconds']:.1f} s, {backfill['peak_mib']:.0f}{spark_text}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100", help="multiples of 2000 users, 1000 items")
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--spark-sizes", default="1", help="sizes that also run the Spark backfill")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument(
        "--writers", default="feast,shoprank", help="shoprank alone: a size too big for Feast"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per writer; the median")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.writer)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    spark_sizes = {int(s) for s in args.spark_sizes.split(",") if s}
    print(HEADER, flush=True)
    results = []
    for scale in (int(s) for s in args.sizes.split(",")):
        stores, writers = args.stores.split(","), args.writers.split(",")
        results += bench_size(scale, stores, scale in spark_sizes, args.out, writers, args.repeat)
    print(
        "rows/s: entities written per second of the materialization alone (no start-up); "
        f"seconds: the median of {args.repeat} runs"
    )
    (args.out / "materialize.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
