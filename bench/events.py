"""Real-time events benchmark: throughput, freshness and quality, each against its
baseline in the same run.

    .venv/bin/python bench/events.py [--home DIR] [--duration 20] [--purchases 600]
        [--stores sqlite,redis] [--rate 10000] [--max-backlog 10000]

On a synthetic workspace (built with `shoprank pipeline` unless --home names
one), with `shoprank serve --processes 2 --stream-worker` (the worker in the
supervisor process), for each of --stores: the embedded default (SQLite store,
local log), and Redis (the online store and a Redis Stream, on a redis-server of
the bench's own with appendfsync always):

1. Throughput: LogEvents calls of 500 events from 2 client threads, as fast as
   they are answered (the capacity: the server sheds past --max-backlog), then
   as an open loop of --rate events/s (what is sustained), for --duration
   seconds each, with a closed loop of Rank calls (100 candidates, 2 threads)
   beside them. Reported: events/s accepted by the API and applied by the
   worker (its state's count), against Metarank's documented import rate
   (3,000 events/s, the top of its 1,000-3,000).
2. Freshness, under the same load: every 0.1 s a user gets one event stamped
   now; the probe then ranks that user until the answer carries features
   younger than a minute (the snapshot's are months old). p50 and p99 from the
   LogEvents answer to that Rank, against the batch path: the wall time of
   `features backfill` + `features materialize` on the same workspace, what an
   event waits for without the stream.
3. Quality: the held-out window's events replayed in time order through
   LogEvents; before each purchase, the buyer is ranked over the bought item and
   99 items drawn uniformly from the rest, on this server (streaming on, every
   earlier event applied) and on a second server over a copy of the workspace
   with no worker (batch features frozen at the window's start). NDCG@10 of
   both, and the lift.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
from common import redis_server  # bench/ is on sys.path when run as a script
from google.protobuf.timestamp_pb2 import Timestamp
from serve import ROOT, SHOPRANK, running

from features.event_log import SqliteEventLog, open_event_log
from features.workspace import Stores, Workspace
from server.processes import free_port
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc

METARANK_EVENTS_PER_SECOND = 3000.0  # docs.metarank.ai, "1,000-3,000 events/s" import
EVENTS_PER_CALL = 500


def stamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def log_requests(workspace: Workspace, calls: int, prefix: str) -> list[bytes]:
    """Serialised LogEventsRequests of held-out (user, item, type), stamped now."""
    heldout = pq.read_table(workspace.heldout_path, columns=["user_id", "item_id", "event_type"])
    users = heldout["user_id"].to_pylist()
    items = heldout["item_id"].to_pylist()
    kinds = heldout["event_type"].to_pylist()
    now = stamp(time.time())
    out = []
    for c in range(calls):
        events = []
        for k in range(EVENTS_PER_CALL):
            n = (c * EVENTS_PER_CALL + k) % len(users)
            events.append(
                pb.Event(
                    event_id=f"{prefix}-{c}-{k}",
                    user_id=users[n],
                    item_id=items[n],
                    type=kinds[n],
                    timestamp=now,
                )
            )
        out.append(pb.LogEventsRequest(events=events).SerializeToString())
    return out


def applied(home: Path) -> int:
    with sqlite3.connect(home / "stream" / "worker.sqlite", timeout=30) as db:
        return int(db.execute("SELECT count(*) FROM applied").fetchone()[0])


def percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    p50, p99 = np.percentile(np.asarray(values) * 1000, [50, 99])
    return f"p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(values)}"


def load_and_freshness(
    home: Path,
    target: str,
    seconds: float,
    stores: Stores,
    rate: float = 0.0,
    prefix: str = "load",
) -> dict[str, float]:
    """rate 0: the producers send as fast as they are answered (a closed loop);
    otherwise an open loop of `rate` events/s between them."""
    workspace = Workspace(home)
    requests = log_requests(workspace, 4000, prefix)
    channel = grpc.insecure_channel(target)
    send = channel.unary_unary(
        "/shoprank.v1.Ranker/LogEvents",
        request_serializer=None,
        response_deserializer=pb.LogEventsResponse.FromString,
    )
    stub = pb_grpc.RankerStub(channel)
    catalogue = pq.read_table(workspace.catalog_path)["item_id"].to_pylist()
    users = pq.read_table(workspace.events_path, columns=["user_id"])["user_id"].unique()
    users = users.to_pylist()
    rng = np.random.default_rng(3)
    stop = threading.Event()

    shed = [0]
    ranks = [0]
    next_request = iter(range(len(requests)))
    lock = threading.Lock()

    interval = 2 * EVENTS_PER_CALL / rate if rate else 0.0  # per producer, between calls
    began = time.perf_counter()

    def producer() -> None:
        calls = 0
        while not stop.is_set():
            if interval:
                wait = began + calls * interval - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                calls += 1
            with lock:
                n = next(next_request, None)
            if n is None:
                return
            try:
                send(requests[n], timeout=10)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                shed[0] += 1
                time.sleep(0.05)

    def ranker() -> None:
        local = np.random.default_rng(threading.get_ident() % 1000)
        while not stop.is_set():
            user = users[int(local.integers(len(users)))]
            chosen = local.choice(len(catalogue), 100, replace=False)
            request = pb.RankRequest(
                user_id=user, candidate_item_ids=[catalogue[i] for i in chosen]
            )
            list(stub.Rank(request, timeout=10))
            ranks[0] += 1

    fresh: list[float] = []

    def probe() -> None:
        k = 0
        while not stop.is_set():
            user = users[int(rng.integers(len(users)))]
            item = catalogue[int(rng.integers(len(catalogue)))]
            event = pb.Event(
                event_id=f"probe-{k}",
                user_id=user,
                item_id=item,
                type="view",
                timestamp=stamp(time.time()),
            )
            k += 1
            try:
                stub.LogEvents(pb.LogEventsRequest(events=[event]), timeout=10)
            except grpc.RpcError:
                time.sleep(0.25)
                continue
            sent = time.perf_counter()
            while not stop.is_set():
                pages = list(
                    stub.Rank(
                        pb.RankRequest(user_id=user, candidate_item_ids=[item], explain=True),
                        timeout=10,
                    )
                )
                age = pages[0].items[0].parts.user_feature_age_seconds
                if 0 <= age < 60:
                    fresh.append(time.perf_counter() - sent)
                    break
                time.sleep(0.002)
            time.sleep(0.1)

    log = open_event_log(Workspace(home, stores))
    before = applied(home)
    logged_before = before + log.backlog()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=f, daemon=True) for f in (producer, producer, ranker, ranker, probe)
    ]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(30)
    elapsed = time.perf_counter() - started
    done = applied(home) - before
    backlog = log.backlog()
    logged = applied(home) + backlog - logged_before  # the log's own count, probes included
    channel.close()
    print(f"{'closed loop' if not rate else f'open loop of {rate:,.0f} events/s'}:")
    print(
        f"throughput: API accepted {logged / elapsed:,.0f} events/s, the worker applied "
        f"{done / elapsed:,.0f} events/s over {elapsed:.0f}s ({shed[0]} calls shed, "
        f"{backlog} events left in the log at the end), with "
        f"{ranks[0] / elapsed:,.0f} Rank calls/s beside; "
        f"{done / elapsed / METARANK_EVENTS_PER_SECOND:.1f}x Metarank's documented "
        f"{METARANK_EVENTS_PER_SECOND:,.0f}/s"
    )
    print(
        f"freshness under that load, LogEvents answer -> first Rank reflecting it: "
        f"{percentiles(fresh)}"
    )
    return {"applied_per_second": done / elapsed, "fresh_p99": float(np.percentile(fresh, 99))}


def features(home: Path, env: dict[str, str], *actions: str) -> None:
    """`shoprank features ACTION` for each action, quietly."""
    for action in actions:
        subprocess.run(
            [*SHOPRANK, "features", action, "--home", str(home)],
            env=env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def batch_path_seconds(home: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    features(home, env, "backfill", "materialize")
    return time.perf_counter() - started


def ndcg_at_10(rank: int) -> float:
    return 1.0 / np.log2(rank + 1) if rank <= 10 else 0.0


def quality(home: Path, streaming: str, frozen: str, purchases: int) -> None:
    workspace = Workspace(home)
    heldout = pq.read_table(workspace.heldout_path).to_pylist()  # in time order
    catalogue = pq.read_table(workspace.catalog_path)["item_id"].to_pylist()
    rng = np.random.default_rng(11)
    log = SqliteEventLog(workspace.stream_dir / "events.sqlite")
    live = grpc.insecure_channel(streaming)
    still = grpc.insecure_channel(frozen)
    stubs = {"streaming": pb_grpc.RankerStub(live), "frozen": pb_grpc.RankerStub(still)}
    gains: dict[str, list[float]] = {"streaming": [], "frozen": []}
    pending: list[pb.Event] = []
    for n, row in enumerate(heldout):
        if row["event_type"] == "purchase":
            if pending:
                stubs["streaming"].LogEvents(pb.LogEventsRequest(events=pending), timeout=30)
                pending = []
                while log.backlog():
                    time.sleep(0.002)
            others = [
                i
                for i in rng.choice(len(catalogue), 100, replace=False)
                if catalogue[i] != row["item_id"]
            ][:99]
            candidates = [row["item_id"], *(catalogue[i] for i in others)]
            for arm, stub in stubs.items():
                pages = stub.Rank(
                    pb.RankRequest(user_id=row["user_id"], candidate_item_ids=candidates),
                    timeout=30,
                )
                ranked = [i.item_id for p in pages for i in p.items]
                gains[arm].append(ndcg_at_10(ranked.index(row["item_id"]) + 1))
            if len(gains["frozen"]) >= purchases:
                break
        pending.append(
            pb.Event(
                event_id=f"replay-{n}",
                user_id=row["user_id"],
                item_id=row["item_id"],
                type=row["event_type"],
                timestamp=stamp(row["ts"].timestamp()),
                query=row["query"] or "",
            )
        )
    on, off = np.mean(gains["streaming"]), np.mean(gains["frozen"])
    se = np.std(np.asarray(gains["streaming"]) - np.asarray(gains["frozen"])) / np.sqrt(
        len(gains["frozen"])
    )
    print(
        f"quality over the first {len(gains['frozen'])} held-out purchases, 1 bought + 99 "
        f"uniform items: NDCG@10 streaming {on:.4f} vs batch frozen {off:.4f}: "
        f"lift {on - off:+.4f} ({(on / off - 1) * 100:+.1f}%, paired s.e. {se:.4f})"
    )
    live.close()
    still.close()


def under_load(
    store: str,
    home: Path,
    source: Path,
    env: dict[str, str],
    args: argparse.Namespace,
    batch: float,
) -> None:
    """Throughput and freshness, closed loop then open, on one online store: sqlite
    (the local log) or redis (a Redis Stream on a redis-server of the bench's own,
    with an append-only file fsynced on every write, as deploy/ runs it)."""
    options = ("--appendonly", "yes", "--appendfsync", "always")
    with redis_server(*options) if store == "redis" else nullcontext("") as redis:
        env = {**env, "SHOPRANK_MAX_EVENT_BACKLOG": str(args.max_backlog)}
        stores = Stores()
        if redis:
            env |= {"SHOPRANK_ONLINE_STORE": "redis", "SHOPRANK_REDIS": redis}
            stores = Stores(online_store="redis", redis=redis)
            shutil.copytree(source, home)
            features(home, env, "apply", "materialize")
        port = free_port("127.0.0.1")
        target = f"127.0.0.1:{port}"
        serve = [
            *SHOPRANK,
            "serve",
            "--home",
            str(home),
            "--port",
            str(port),
            "--processes",
            "2",
            "--stream-worker",
        ]
        print(f"[{store}] online store and its event log:")
        with running([serve], target, env):
            time.sleep(15)  # the worker's start: Feast's import and the snapshot's basis
            closed = load_and_freshness(home, target, args.duration, stores)
            time.sleep(10)  # the backlog drains
            paced = load_and_freshness(home, target, args.duration, stores, args.rate, "paced")
        for name, result in (("open loop", paced), ("closed loop", closed)):
            print(
                f"[{store}] {name}: freshness p99 {result['fresh_p99'] * 1000:.0f} ms vs the "
                f"batch path's {batch:.1f}s: {batch / result['fresh_p99']:.0f}x sooner"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="a trained synthetic workspace to copy")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--purchases", type=int, default=500)
    parser.add_argument(
        "--rate", type=float, default=10_000.0, help="events/s of the open-loop run"
    )
    parser.add_argument(
        "--max-backlog",
        type=int,
        default=10_000,
        help="the server's SHOPRANK_MAX_EVENT_BACKLOG: past it, LogEvents sheds, so the "
        "closed loop's lag stays near max-backlog / the worker's rate",
    )
    parser.add_argument(
        "--stores", default="sqlite,redis", help="online stores (and so event logs) to load"
    )
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    work = Path(tempfile.mkdtemp(prefix="bench-events-"))
    try:
        source = work / "source"
        if args.home:
            shutil.copytree(args.home, source, ignore=shutil.ignore_patterns("stream"))
            shutil.rmtree(source / "data" / "events-logged", ignore_errors=True)
        else:
            subprocess.run(
                [*SHOPRANK, "pipeline", "--dataset", "synthetic", "--home", str(source)],
                env=env,
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        features(source, env, "apply")
        homes = {name: work / name for name in ("load", "replay", "frozen")}
        for home in homes.values():
            shutil.copytree(source, home)
        batch = batch_path_seconds(homes["frozen"], env)
        print(
            f"baseline, the batch path: backfill + materialize took {batch:.1f}s "
            "(an event's wait for its features without the stream, before any schedule)"
        )
        print(f"the servers shed LogEvents past a backlog of {args.max_backlog:,} events")
        for store in args.stores.split(","):
            under_load(
                store,
                homes["load"] if store == "sqlite" else work / store,
                source,
                env,
                args,
                batch,
            )
        ports = free_port("127.0.0.1"), free_port("127.0.0.1")
        live = [
            *SHOPRANK,
            "serve",
            "--home",
            str(homes["replay"]),
            "--port",
            str(ports[0]),
            "--processes",
            "1",
            "--stream-worker",
        ]
        still_home = work / "still"
        shutil.copytree(source, still_home)
        still = [
            *SHOPRANK,
            "serve",
            "--home",
            str(still_home),
            "--port",
            str(ports[1]),
            "--processes",
            "1",
        ]
        with (
            running([live], f"127.0.0.1:{ports[0]}", env),
            running([still], f"127.0.0.1:{ports[1]}", env),
        ):
            time.sleep(15)
            quality(
                homes["replay"],
                f"127.0.0.1:{ports[0]}",
                f"127.0.0.1:{ports[1]}",
                args.purchases,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
