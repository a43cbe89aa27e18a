"""A gRPC load generator for Rank: closed loop (concurrency) or open loop (rps).

Each call is timed to the last page of its stream. Runs are bounded by a
duration and stop by themselves; they target the address given, which for
tests and benchmarks is always loopback.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np

from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Report:
    calls: int
    errors: dict[str, int]
    seconds: float
    qps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def line(self) -> str:
        errors = sum(self.errors.values())
        return (
            f"{self.calls} calls in {self.seconds:.1f}s: {self.qps:.0f}/s, "
            f"p50 {self.p50_ms:.2f} ms, p90 {self.p90_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, "
            f"max {self.max_ms:.2f} ms, errors {errors} {self.errors or ''}"
        ).rstrip()


def load_scenario(path: Path) -> list[pb.RankRequest]:
    """A JSON list of {"user": U, "candidates": [...], "top_k": K, "page_size": P}."""
    try:
        body = json.loads(path.read_text())
        return [
            pb.RankRequest(
                user_id=r["user"],
                candidate_item_ids=r["candidates"],
                top_k=r.get("top_k", 0),
                page_size=r.get("page_size", 0),
                explain=r.get("explain", False),
            )
            for r in body
        ]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"scenario {path} is not a list of requests: {error}") from None


def write_scenario(path: Path, requests: list[dict[str, object]]) -> None:
    path.write_text(json.dumps(requests))


def summarise(latencies: list[float], errors: dict[str, int], seconds: float) -> Report:
    ms = np.asarray(latencies) * 1e3 if latencies else np.zeros(1)
    return Report(
        calls=len(latencies),
        errors=errors,
        seconds=seconds,
        qps=len(latencies) / seconds if seconds > 0 else 0.0,
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        max_ms=float(ms.max()),
    )


async def _call(stub: pb_grpc.RankerStub, request: pb.RankRequest, timeout: float) -> None:
    async for _ in stub.Rank(request, timeout=timeout):
        pass


async def run(
    target: str,
    requests: list[pb.RankRequest],
    duration: float,
    concurrency: int = 1,
    rps: float = 0.0,
    timeout: float = 5.0,
    warmup: float = 1.0,
    seed: int = 0,
    connections: int = 1,
) -> Report:
    """Send requests (cycled, shuffled) for `duration` seconds after a warm-up.

    Calls are spread over `connections` TCP connections, so several server
    processes sharing a port all get work. SO_REUSEPORT balances connections,
    not calls, and 4 connections land 3:1 on 2 processes half the time; so each
    call takes the connection with the fewest calls in flight, as a
    least-request balancer would, and a busier process gets fewer.
    """
    if not requests:
        raise ValueError("no requests to send")
    order = list(requests)
    random.Random(seed).shuffle(order)
    # A local subchannel pool gives each channel its own TCP connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(connections)]
    try:
        stubs = [pb_grpc.RankerStub(channel) for channel in channels]
        await _phase(stubs, order, warmup, concurrency, rps, timeout)
        return await _phase(stubs, order, duration, concurrency, rps, timeout)
    finally:
        for channel in channels:
            await channel.close()


async def _phase(
    stubs: list[pb_grpc.RankerStub],
    requests: list[pb.RankRequest],
    duration: float,
    concurrency: int,
    rps: float,
    timeout: float,
) -> Report:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    started = time.perf_counter()
    stop_at = started + duration
    counter = iter(range(1 << 62))
    in_flight = [0] * len(stubs)

    async def one() -> None:
        n = next(counter)
        # The least busy connection; ties go round-robin, so an idle start spreads too.
        c = min(range(len(stubs)), key=lambda i: (in_flight[i], (i - n) % len(stubs)))
        in_flight[c] += 1
        t = time.perf_counter()
        try:
            await _call(stubs[c], requests[n % len(requests)], timeout)
            latencies.append(time.perf_counter() - t)
        except grpc.aio.AioRpcError as error:
            errors[error.code().name] = errors.get(error.code().name, 0) + 1
        finally:
            in_flight[c] -= 1

    async def closed_loop() -> None:
        while time.perf_counter() < stop_at:
            await one()

    if rps > 0:
        pending: set[asyncio.Task[None]] = set()
        interval = 1.0 / rps
        tick = started
        while tick < stop_at:
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            tick += interval
            await asyncio.sleep(max(0.0, tick - time.perf_counter()))
        await asyncio.gather(*pending)
    else:
        await asyncio.gather(*(closed_loop() for _ in range(concurrency)))
    return summarise(latencies, errors, time.perf_counter() - started)


def report_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(asdict(report), indent=2))
