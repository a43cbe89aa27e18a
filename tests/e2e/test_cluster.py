"""The production topology on loopback, as `make cluster` runs it (deploy/cluster.py):
a 3-node Redis Cluster, the PostgreSQL registry, the one-shot jobs, two replicas and
Debian's nginx in front. Each test prints the figures the note quotes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from deploy import cluster as topology
from features.offline import snapshot_file, write_snapshot
from features.workspace import Workspace
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from training import registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the first test waits for `up`

POLL_SECONDS = 0.5
REFRESH_SECONDS = 1.0
REQUEST = pb.RankRequest(
    user_id="user_000001", candidate_item_ids=[f"item_{i:06d}" for i in range(50)], top_k=10
)
THREADS = 6


def run_cli(c: topology.Cluster, *args: str) -> None:
    env = {**os.environ, **c.env}
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[topology.Cluster]:
    try:
        topology.check_binaries()
    except topology.ClusterError as error:
        pytest.skip(str(error))
    home = tmp_path_factory.mktemp("cluster")
    database = f"shoprank_test_{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "SHOPRANK_MODEL_POLL_SECONDS": str(POLL_SECONDS),
        "SHOPRANK_CACHE_REFRESH_SECONDS": str(REFRESH_SECONDS),
    }
    command = [sys.executable, "-m", "deploy.cluster", "--home", str(home)]
    small = ["--users", "300", "--items", "200", "--days", "14"]
    up = subprocess.run(
        [*command, "up", "--database", database, "--free-ports", *small],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        print("\n" + up.stdout)
        yield topology.Cluster.read(home)
    finally:
        subprocess.run([*command, "down", "--drop-database"], env=env, timeout=120)


def replica_ok_calls(c: topology.Cluster, metrics: str) -> int:
    url = f"http://127.0.0.1:{c.ports[metrics]}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found = re.search(r'shoprank_rank_requests_total\{code="OK"\} ([0-9.e+]+)', text)
    return int(float(found.group(1))) if found else 0


def answer(address: str) -> list[tuple[str, float]]:
    with grpc.insecure_channel(address) as channel:
        pages = list(pb_grpc.RankerStub(channel).Rank(REQUEST, timeout=10))
    return [(item.item_id, round(item.score, 6)) for page in pages for item in page.items]


def served_version(address: str) -> str:
    with grpc.insecure_channel(address) as channel:
        info = pb_grpc.RankerStub(channel).GetServingInfo(pb.GetServingInfoRequest(), timeout=10)
    return str(info.model_version)


class Load:
    """THREADS callers through nginx, one call in flight each; outcomes by time."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = pb_grpc.RankerStub(self._channel)
        self.calls: list[tuple[float, str]] = []  # (ended, code)
        self.details: set[str] = set()  # of the failed calls
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(THREADS)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                list(self._stub.Rank(REQUEST, timeout=10))
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
                self.details.add(f"{code}: {error.details()}")
            self.calls.append((time.monotonic(), code))

    def codes(self, after: float = 0.0) -> Counter[str]:
        return Counter(code for ended, code in self.calls if ended > after)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._channel.close()


def wait_gone(pid: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while topology.alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive after {seconds:g}s"
        time.sleep(0.05)


def replica_env(c: topology.Cluster) -> dict[str, str]:
    env = {**os.environ, **c.env, "PYTHONPATH": str(topology.ROOT)}
    env["SHOPRANK_MODEL_POLL_SECONDS"] = str(POLL_SECONDS)
    env["SHOPRANK_CACHE_REFRESH_SECONDS"] = str(REFRESH_SECONDS)
    return env


def restart(c: topology.Cluster, ranker: str) -> None:
    """Start the replica again, nginx told to use it, and wait for calls to reach it:
    nginx tries a replica it marked failed again only after fail_timeout."""
    topology.restart_replica(c, ranker, replica_env(c))
    metrics = dict(topology.RANKERS)[ranker]
    before = replica_ok_calls(c, metrics)
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(c.nginx) as channel:
        stub = pb_grpc.RankerStub(channel)
        while replica_ok_calls(c, metrics) == before:
            assert time.monotonic() < deadline, f"nginx sends no call to the restarted {ranker}"
            for _ in range(10):
                list(stub.Rank(REQUEST, timeout=10))


def test_calls_through_nginx_reach_both_replicas(cluster: topology.Cluster) -> None:
    before = [replica_ok_calls(cluster, metrics) for _, metrics in topology.RANKERS]
    with grpc.insecure_channel(cluster.nginx) as channel:
        stub = pb_grpc.RankerStub(channel)
        for _ in range(200):
            list(stub.Rank(REQUEST, timeout=10))
    after = [replica_ok_calls(cluster, metrics) for _, metrics in topology.RANKERS]
    served = [a - b for a, b in zip(after, before, strict=True)]
    print(f"\n200 calls through nginx: {served[0]} on replica a, {served[1]} on replica b")
    assert sum(served) == 200 and min(served) > 0


def test_a_materialization_changes_both_replicas_answers(cluster: topology.Cluster) -> None:
    workspace = Workspace(Path(cluster.env["SHOPRANK_HOME"]))
    before = [answer(address) for address in cluster.rankers]
    assert before[0] == before[1]
    newest = sorted(workspace.item_features_path.glob("*.parquet"))[-1]
    table = pq.read_table(newest)
    later = table["event_timestamp"][0].as_py() + timedelta(hours=1)
    bias = table.schema.get_field_index("item_bias")
    stamp = table.schema.get_field_index("event_timestamp")
    table = table.set_column(bias, "item_bias", pc.multiply(table["item_bias"], 0.25))
    table = table.set_column(
        stamp, "event_timestamp", pc.add(table["event_timestamp"], timedelta(hours=1))
    )
    write_snapshot(table, snapshot_file(workspace.item_features_path, later))
    start = later.isoformat()
    end = (later + timedelta(seconds=1)).isoformat()
    run_cli(cluster, "features", "materialize", "--start", start, "--end", end)
    materialized = time.monotonic()
    deadline = materialized + 30
    seen: dict[str, float] = {}
    while len(seen) < 2:
        assert time.monotonic() < deadline, "a replica did not pick up the materialization"
        for address, old in zip(cluster.rankers, before, strict=True):
            if address not in seen and answer(address) != old:
                seen[address] = time.monotonic() - materialized
        time.sleep(0.1)
    after = [answer(address) for address in cluster.rankers]
    print(f"\nmaterialization seen by the replicas after {sorted(seen.values())} s")
    assert after[0] == after[1] != before[0]


def test_a_promoted_model_is_served_by_both_replicas_within_their_poll(
    cluster: topology.Cluster,
) -> None:
    models = Workspace(Path(cluster.env["SHOPRANK_HOME"])).models_dir
    current = registry.current_version(models)
    assert current is not None
    staging = models.parent / "staging-promote"
    shutil.copytree(models / current, staging)
    version = registry.publish(models, staging, make_current=False)
    run_cli(cluster, "models", "promote", version)
    promoted = time.monotonic()
    deadline = promoted + 30
    seen: dict[str, float] = {}
    while len(seen) < 2:
        assert time.monotonic() < deadline, "a replica did not swap the promoted model in"
        for address in cluster.rankers:
            if address not in seen and served_version(address) == version:
                seen[address] = time.monotonic() - promoted
        time.sleep(0.05)
    print(f"\nmodel {version} served by both replicas after {sorted(seen.values())} s")
    # Within a poll, and the load, check and warm-up that follow it.
    assert max(seen.values()) <= POLL_SECONDS + 10


def test_a_replica_stopped_with_sigterm_behind_nginx_fails_no_call(
    cluster: topology.Cluster,
) -> None:
    """`deploy.cluster stop-replica`: nginx stops sending it calls, then SIGTERM drains it."""
    replica = cluster.process("ranker_a")
    with Load(cluster.nginx) as load_:
        time.sleep(1.0)
        stopped = time.monotonic()
        topology.stop_replica(cluster, "ranker_a")
        assert not topology.alive(replica.pid)
        time.sleep(1.0)
    codes = load_.codes()
    print(
        f"\nSIGTERM, drained from nginx first: {dict(codes)}; "
        f"after it: {dict(load_.codes(stopped))}"
    )
    assert set(codes) == {"OK"}, codes
    assert load_.codes(stopped)["OK"] > 0
    restart(cluster, "ranker_a")


def test_a_bare_sigterm_fails_at_most_the_calls_grpc_had_queued(
    cluster: topology.Cluster,
) -> None:
    """SIGTERM with no word to nginx, under a load that saturates both replicas: calls
    the replica had started finish; those gRPC had received and not started end
    CANCELLED (grpc.aio's stop() stops servicing new calls at once)."""
    replica = cluster.process("ranker_a")
    with Load(cluster.nginx) as load_:
        time.sleep(1.0)
        os.kill(replica.pid, signal.SIGTERM)
        stopped = time.monotonic()
        wait_gone(replica.pid)
        time.sleep(1.0)
    codes = load_.codes()
    failed = {code: n for code, n in codes.items() if code != "OK"}
    print(f"\nbare SIGTERM to a replica behind nginx: {dict(codes)}; {sorted(load_.details)}")
    # At most the calls in flight; how each ends depends on where gRPC and nginx had it.
    assert sum(failed.values()) <= THREADS, (codes, load_.details)
    later = load_.codes(stopped + 0.5)
    assert set(later) == {"OK"}, later
    restart(cluster, "ranker_a")


def test_a_replica_killed_with_sigkill_fails_only_its_calls_in_flight(
    cluster: topology.Cluster,
) -> None:
    replica = cluster.process("ranker_b")
    with Load(cluster.nginx) as load_:
        time.sleep(1.0)
        os.kill(replica.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_gone(replica.pid)
        time.sleep(2.0)
    codes, after = load_.codes(), load_.codes(killed + 0.5)
    failed = sum(n for code, n in codes.items() if code != "OK")
    print(f"\nSIGKILL to a replica behind nginx: {dict(codes)}; from 0.5 s after: {dict(after)}")
    # At most one call in flight per caller, and only those on the killed replica fail.
    assert failed <= THREADS
    assert set(after) == {"OK"} and after["OK"] > 0
    restart(cluster, "ranker_b")
    with grpc.insecure_channel(cluster.rankers[1]) as channel:
        assert list(pb_grpc.RankerStub(channel).Rank(REQUEST, timeout=10))
