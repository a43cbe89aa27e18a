"""A real Redis killed, hung and brought back while a real server is under load.

The online store is a redis-server of this test's own. Calls must degrade, not fail:
a user read recently is served as read (STALE_FEATURES), anyone else cold-start
(DEGRADED); with SHOPRANK_ON_STORE_FAILURE=fail they get UNAVAILABLE and health
says NOT_SERVING. When Redis comes back, service recovers by itself within 5 s.
Each test prints its fault's figures: calls sent, failed by code, time to recover.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from features.workspace import Stores, Workspace
from server.app import load
from server.config import Settings
from server.processes import free_port
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc
from tests.services import RedisProcess, missing_redis_binaries
from tests.support import ServerThread, materialized_copy

Flag = pb.ScoreParts.Flag
ROOT = Path(__file__).resolve().parents[2]
PROBE_SECONDS = 0.2
RECOVERY_LIMIT = 5.0  # the bound; the probe makes it PROBE_SECONDS here
DEADLINE = 2.0
ITEMS = [f"item_{i:06d}" for i in range(40)]
LOAD_USERS = [f"user_{i:06d}" for i in range(1, 21)]
UNSEEN_USERS = [f"user_{i:06d}" for i in range(200, 210)]  # never read before the outage


def rank(
    stub: pb_grpc.RankerStub, user: str, explain: bool = False, timeout: float = DEADLINE
) -> list[pb.RankResponse]:
    request = pb.RankRequest(user_id=user, candidate_item_ids=ITEMS, top_k=10, explain=explain)
    return list(stub.Rank(request, timeout=timeout))


def outcome(pages: list[pb.RankResponse]) -> str:
    return Flag.Name(pages[0].flags[0]) if pages[0].flags else "FRESH"


def answer(pages: list[pb.RankResponse]) -> list[tuple[str, float]]:
    return [(item.item_id, item.score) for page in pages for item in page.items]


@dataclass(frozen=True)
class Call:
    started: float
    ended: float
    user: str
    outcome: str  # FRESH, STALE_FEATURES, DEGRADED, or the status code's name
    answer: tuple[tuple[str, float], ...] = ()


class Load:
    """Two client threads ranking LOAD_USERS round and round; every call recorded."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = pb_grpc.RankerStub(channel)
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,)) for k in range(2)]

    def _run(self, offset: int) -> None:
        turn = offset
        while not self._stop.is_set():
            user = LOAD_USERS[turn % len(LOAD_USERS)]
            turn += 2
            started = time.monotonic()
            try:
                pages = rank(self._stub, user)
                call = Call(started, time.monotonic(), user, outcome(pages), tuple(answer(pages)))
            except grpc.RpcError as error:
                call = Call(started, time.monotonic(), user, error.code().name)
            self.calls.append(call)

    def first(self, after: float, wanted: str) -> Call | None:
        return next(
            (c for c in list(self.calls) if c.started >= after and c.outcome == wanted), None
        )

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


@dataclass
class Served:
    redis: RedisProcess
    channel: grpc.Channel
    metrics_url: str

    @property
    def stub(self) -> pb_grpc.RankerStub:
        return pb_grpc.RankerStub(self.channel)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return str(response.read().decode())

    def health(self) -> int:
        check = health_pb2_grpc.HealthStub(self.channel).Check
        return int(check(health_pb2.HealthCheckRequest(service=""), timeout=DEADLINE).status)


@pytest.fixture
def on_redis(workspace: Workspace, tmp_path: Path) -> Iterator[tuple[Workspace, RedisProcess]]:
    """A copy of the workspace materialized into a redis-server of its own, saved to disk."""
    missing = missing_redis_binaries()
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH (Debian: apt-get install redis-server)")
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        stores = Stores(online_store="redis", redis=redis.url)
        yield materialized_copy(workspace, tmp_path / "home", stores), redis
    finally:
        redis.stop()


@contextmanager
def serving(copy: Workspace, redis: RedisProcess, **settings: object) -> Iterator[Served]:
    redis.save()  # what a restart comes back with
    metrics = free_port("127.0.0.1")
    config = Settings(
        home=copy.home,
        port=0,
        online_store="redis",
        redis=redis.url,
        metrics_port=metrics,
        store_probe_seconds=PROBE_SECONDS,
        **settings,  # type: ignore[arg-type]
    )
    server = ServerThread(config, load(config))
    port = server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Served(redis, channel, f"http://127.0.0.1:{metrics}/metrics")
    finally:
        server.stop()


def wait_until(done: Callable[[], object], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"{what} not within {seconds:g}s"
        time.sleep(0.02)


def report(fault: str, calls: list[Call], recovered: float) -> None:
    failed = Counter(
        c.outcome for c in calls if c.outcome not in ("FRESH", "STALE_FEATURES", "DEGRADED")
    )
    served = Counter(c.outcome for c in calls)
    slowest = max(c.ended - c.started for c in calls)
    print(
        f"\nfault {fault}: {len(calls)} calls; served {dict(served)}; "
        f"failed {dict(failed) or 0}; slowest call {slowest * 1000:.0f} ms; "
        f"recovered {recovered:.2f} s after the store came back"
    )


def outage(
    served: Served, down: Callable[[], None], up: Callable[[], None]
) -> tuple[list[Call], float, dict[str, list[tuple[str, float]]], list[pb.RankResponse]]:
    """Load through an outage of the store; (calls, seconds to recover, fresh answers
    per user from before, and one unseen user's explained answer during it)."""
    stub = served.stub
    before = {user: answer(rank(stub, user)) for user in LOAD_USERS}
    with Load(served.channel) as load_:
        time.sleep(1.0)
        down()
        went = time.monotonic()
        wait_until(lambda: load_.first(went, "STALE_FEATURES"), "a stale call")
        wait_until(lambda: "shoprank_feature_store_up 0.0" in served.metrics(), "held down")
        unseen = [rank(stub, user, explain=True) for user in UNSEEN_USERS]
        time.sleep(1.0)
        back = time.monotonic()  # before: a restart returns once Redis answers, maybe later
        up()
        wait_until(lambda: load_.first(back, "FRESH"), "a fresh call after the store came back")
        recovered = load_.first(back, "FRESH")
        time.sleep(0.5)
    assert recovered is not None
    during = [c for c in load_.calls if went + 0.5 < c.started and c.ended < back]
    assert during, "no call ran wholly within the outage"
    for call in during:  # each served as read before the outage, exactly
        assert call.outcome == "STALE_FEATURES", call
        assert list(call.answer) == before[call.user]
    return load_.calls, recovered.started - back, before, unseen[0]


def test_a_killed_redis_degrades_every_call_and_recovers_by_itself(
    on_redis: tuple[Workspace, RedisProcess],
) -> None:
    copy, redis = on_redis
    with serving(copy, redis) as served:
        cold = rank(served.stub, "no_such_user", explain=True)
        calls, recovered, _, unseen = outage(served, redis.kill, redis.start)
        metrics = served.metrics()
    report("redis SIGKILL, restarted from its snapshot", calls, recovered)
    assert {c.outcome for c in calls} <= {"FRESH", "STALE_FEATURES", "DEGRADED"}
    assert recovered <= RECOVERY_LIMIT
    # No recent row: cold start by item bias, flagged DEGRADED and not COLD_START_USER.
    assert list(unseen[0].flags) == [Flag.DEGRADED]
    assert answer(unseen) == answer(cold)
    assert all(list(item.parts.flags) == [Flag.DEGRADED] for item in unseen[0].items)
    assert list(cold[0].flags) == []
    assert "shoprank_feature_store_up 1.0" in metrics
    assert 'shoprank_user_reads_total{served="degraded"} 10.0' in metrics
    assert 'shoprank_user_reads_total{served="stale"}' in metrics


def test_a_hung_redis_costs_calls_no_more_than_the_read_timeout(
    on_redis: tuple[Workspace, RedisProcess],
) -> None:
    copy, redis = on_redis
    with serving(copy, redis, user_read_timeout_seconds=0.05) as served:
        calls, recovered, _, unseen = outage(served, redis.pause, redis.resume)
    report("redis SIGSTOP (hung), then SIGCONT", calls, recovered)
    # Each call waits at most the read timeout, never the 2 s deadline.
    assert {c.outcome for c in calls} <= {"FRESH", "STALE_FEATURES", "DEGRADED"}
    assert list(unseen[0].flags) == [Flag.DEGRADED]
    assert recovered <= RECOVERY_LIMIT


def test_with_fail_a_down_store_gets_unavailable_and_not_serving_then_recovers(
    on_redis: tuple[Workspace, RedisProcess],
) -> None:
    copy, redis = on_redis
    serving_ = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    with serving(copy, redis, on_store_failure="fail") as served, Load(served.channel) as load_:
        time.sleep(1.0)
        redis.kill()
        went = time.monotonic()
        wait_until(lambda: served.health() == not_serving, "NOT_SERVING")
        with pytest.raises(grpc.RpcError) as raised:
            rank(served.stub, LOAD_USERS[0])
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "check the online store is reachable" in (raised.value.details() or "")
        back = time.monotonic()
        redis.start()
        wait_until(lambda: served.health() == serving_, "SERVING again")
        wait_until(lambda: load_.first(back, "FRESH"), "a fresh call after the store came back")
        recovered = load_.first(back, "FRESH")
    assert recovered is not None
    report("redis SIGKILL with on_store_failure=fail", load_.calls, recovered.started - back)
    outcomes = {c.outcome for c in load_.calls}
    assert outcomes == {"FRESH", "UNAVAILABLE"}
    assert all(c.outcome == "UNAVAILABLE" for c in load_.calls if went + 0.5 < c.started < back)
    assert recovered.started - back <= RECOVERY_LIMIT


def test_sigterm_says_not_serving_and_lets_the_call_in_flight_finish(
    on_redis: tuple[Workspace, RedisProcess],
) -> None:
    """A real `shoprank serve` and a real SIGTERM. The call in flight is held in its
    user read by a hung Redis (the read timeout is longer than the drain); the health
    watch says NOT_SERVING at once, the call ends OK once Redis answers, exit 0."""
    copy, redis = on_redis
    port = free_port("127.0.0.1")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHOPRANK_ONLINE_STORE": "redis",
        "SHOPRANK_REDIS": redis.url,
        "SHOPRANK_USER_READ_TIMEOUT_SECONDS": "10",
        "SHOPRANK_GRACE_SECONDS": "10",
    }
    command = [sys.executable, "-m", "server.cli", "serve", "--home", str(copy.home)]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--processes", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert "serving on" in process.stdout.readline()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=30
            )
            statuses = [next(watch).status]
            stub = pb_grpc.RankerStub(channel)
            redis.pause()
            result: dict[str, object] = {}

            def in_flight() -> None:
                try:
                    result["pages"] = rank(stub, LOAD_USERS[0], explain=False, timeout=30)
                except grpc.RpcError as error:
                    result["error"] = error.code().name

            thread = threading.Thread(target=in_flight)
            thread.start()
            time.sleep(0.5)  # the call is in its user read, waiting on the hung Redis
            process.send_signal(signal.SIGTERM)
            statuses.append(next(watch).status)
            time.sleep(0.5)
            redis.resume()
            thread.join(timeout=30)
        assert process.wait(timeout=30) == 0
    finally:
        redis.resume()
        if process.poll() is None:
            process.kill()
    assert statuses == [
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ]
    assert "error" not in result, result
    pages = result["pages"]
    assert isinstance(pages, list) and outcome(pages) == "FRESH"
    assert len(answer(pages)) == 10
