"""Spread a load over worker processes and merge what they recorded, exactly.

One asyncio process tops out near one core's worth of calls; `--workers N`
runs N of them (spawned, not forked: gRPC's threads do not survive a fork), each
with its share of the concurrency, rate or count, and its own draws from the
scenario. They start measuring together, at a barrier after their warm-ups.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queues
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TextIO

import uvloop

from server.clients.loadtest.generator import Load, Target, drive
from server.clients.loadtest.record import Recording, Second, format_us, merge
from server.clients.loadtest.scenario import Shot

BARRIER_SECONDS = 120.0  # a worker this late to start has failed


@dataclass(frozen=True)
class Outcome:
    warmup: Recording
    measured: Recording


class Progress:
    """One line a second, once every worker has reported that second."""

    def __init__(self, workers: int, out: TextIO | None = sys.stderr) -> None:
        self._workers = workers
        self._out = out
        self._pending: dict[int, list[dict[str, Any]]] = {}
        self._calls = 0
        self._errors = 0

    def add(self, second: int, body: dict[str, Any]) -> None:
        if self._out is None:
            return
        waiting = self._pending.setdefault(second, [])
        waiting.append(body)
        if len(waiting) < self._workers:
            return
        merged = Second()
        for part in self._pending.pop(second):
            merged.add_json(part)
        self._calls += merged.calls
        self._errors += merged.errors
        p99 = merged.latency.get_value_at_percentile(99) if merged.latency.get_total_count() else 0
        print(
            f"[{second + 1:>4}s] requests {self._calls:>8}  qps {merged.calls:>6}  "
            f"errors {self._errors:>6}  p99 {format_us(p99)}",
            file=self._out,
            flush=True,
        )


def split(load: Load, workers: int) -> list[Load]:
    """Each worker's share: concurrency and count as even as whole numbers allow."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if load.rps <= 0 and load.concurrency < workers:
        raise ValueError(f"concurrency {load.concurrency} cannot be spread over {workers} workers")
    if load.requests and load.requests < workers:
        raise ValueError(f"{load.requests} requests cannot be spread over {workers} workers")

    def share(total: int, i: int) -> int:
        return total // workers + (i < total % workers)

    return [
        replace(
            load,
            concurrency=share(load.concurrency, i),
            rps=load.rps / workers,
            requests=share(load.requests, i) if load.requests else 0,
            connections=max(1, share(load.connections, i)),
        )
        for i in range(workers)
    ]


def run(target: Target, load: Load, pools: list[list[Shot]], progress: Progress) -> Outcome:
    """len(pools) workers: in this process for one, in spawned processes for more."""
    loads = split(load, len(pools))
    if len(pools) == 1:

        def on_second(second: int, record: Recording) -> None:
            progress.add(second, record.seconds[second].to_json())

        warm, measured = uvloop.run(drive(target, loads[0], pools[0], on_second))
        return Outcome(warm, measured)
    return _spawned(target, loads, pools, progress)


def _spawned(
    target: Target, loads: list[Load], pools: list[list[Shot]], progress: Progress
) -> Outcome:
    context = mp.get_context("spawn")
    messages: mp.Queue[tuple[Any, ...]] = context.Queue()
    barrier = context.Barrier(len(pools))
    processes = [
        context.Process(
            target=_worker,
            args=(i, target, loads[i], pools[i], i / len(pools), messages, barrier),
            daemon=True,
        )
        for i in range(len(pools))
    ]
    for process in processes:
        process.start()
    done: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    try:
        while len(done) < len(processes):
            try:
                message = messages.get(timeout=1.0)
            except queues.Empty:
                dead = [p for i, p in enumerate(processes) if i not in done and not p.is_alive()]
                if dead:
                    raise RuntimeError(
                        f"a load worker exited with code {dead[0].exitcode} before reporting"
                    ) from None
                continue
            if message[0] == "second":
                progress.add(message[2], message[3])
            elif message[0] == "done":
                done[message[1]] = (message[2], message[3])
            else:
                raise RuntimeError(f"load worker {message[1]}: {message[2]}")
    finally:
        barrier.abort()  # releases any worker still waiting, if one failed
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
    ordered = [done[i] for i in range(len(processes))]
    return Outcome(merge([w for w, _ in ordered]), merge([m for _, m in ordered]))


def _worker(
    index: int,
    target: Target,
    load: Load,
    shots: list[Shot],
    offset: float,
    messages: mp.Queue[tuple[Any, ...]],
    barrier: Any,
) -> None:
    def on_second(second: int, record: Recording) -> None:
        messages.put(("second", index, second, record.seconds[second].to_json()))

    wait: Callable[[], None] = lambda: barrier.wait(BARRIER_SECONDS)  # noqa: E731
    try:
        warm, measured = uvloop.run(drive(target, load, shots, on_second, offset, wait))
        messages.put(("done", index, warm.to_json(), measured.to_json()))
    except Exception as error:
        messages.put(("error", index, f"{type(error).__name__}: {error}"))
