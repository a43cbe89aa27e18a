"""The load itself: Rank calls on an asyncio loop, closed loop or open loop.

Closed loop keeps `concurrency` calls in flight. Open loop starts calls at a
fixed rate whatever the server does, and times each from its *intended* start,
so a server that queues cannot hide it by slowing the generator down (no
coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from server.clients.channels import Access
from server.clients.loadtest.record import Recording
from server.clients.loadtest.scenario import Shot
from server.proto.shoprank.v1 import ranking_pb2_grpc as pb_grpc

LAG_PROBE_SECONDS = 0.01
# Called once a second with the index of the second just completed and its data.
OnSecond = Callable[[int, Recording], None]


@dataclass(frozen=True)
class Load:
    concurrency: int = 8  # closed loop: calls in flight
    rps: float = 0.0  # > 0: open loop at this many calls started per second
    duration: float = 10.0  # seconds measured; 0 = until `requests`
    requests: int = 0  # > 0: stop after this many measured calls
    warmup: float = 1.0  # seconds before measuring; its calls are counted apart
    connections: int = 4  # TCP connections; each call takes the least busy one

    def __post_init__(self) -> None:
        if self.concurrency < 1 and self.rps <= 0:
            raise ValueError("concurrency must be at least 1 (or give --rps)")
        if self.duration <= 0 and self.requests <= 0:
            raise ValueError("give a --duration or a --requests count")
        if self.connections < 1:
            raise ValueError("connections must be at least 1")
        if self.warmup < 0:
            raise ValueError("warmup must be 0 or more seconds")

    @property
    def mode(self) -> str:
        return "open" if self.rps > 0 else "closed"


@dataclass(frozen=True)
class Target:
    address: str
    access: Access = field(default_factory=Access)

    def channel(self) -> grpc.aio.Channel:
        # A local subchannel pool gives each channel its own TCP connection.
        return self.access.aio_channel(self.address, [("grpc.use_local_subchannel_pool", 1)])


async def drive(
    target: Target,
    load: Load,
    shots: list[Shot],
    on_second: OnSecond | None = None,
    start_offset: float = 0.0,
    before_measuring: Callable[[], None] | None = None,
) -> tuple[Recording, Recording]:
    """The warm-up's recording and the measured run's. `start_offset` (a fraction
    of one interval) interleaves open-loop workers; `before_measuring` lets
    parallel workers start their measured runs together."""
    if not shots:
        raise ValueError("no requests to send")
    channels = [target.channel() for _ in range(load.connections)]
    try:
        stubs = [pb_grpc.RankerStub(channel) for channel in channels]
        caller = _Caller(stubs, shots, target.access.metadata)
        warm = Recording()
        if load.warmup > 0:
            warm = await caller.phase(load, load.warmup, 0, start_offset, None)
        if before_measuring is not None:
            await asyncio.get_running_loop().run_in_executor(None, before_measuring)
        measured = await caller.phase(load, load.duration, load.requests, start_offset, on_second)
        return warm, measured
    finally:
        for channel in channels:
            await channel.close()


class _Caller:
    def __init__(
        self,
        stubs: list[pb_grpc.RankerStub],
        shots: list[Shot],
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        self._stubs = stubs
        self._shots = shots
        self._metadata = metadata or None
        self._next = 0  # the pool is cycled across phases
        self._in_flight = [0] * len(stubs)

    def _shot(self) -> Shot:
        shot = self._shots[self._next % len(self._shots)]
        self._next += 1
        return shot

    async def phase(
        self,
        load: Load,
        duration: float,
        count: int,
        start_offset: float,
        on_second: OnSecond | None,
    ) -> Recording:
        record = Recording()
        started = time.perf_counter()
        cpu, loop_cpu = time.process_time(), time.thread_time()
        stop_at = started + duration if duration > 0 else math.inf
        limit = count if count > 0 else math.inf
        ticker = _Ticker(record, started, on_second) if on_second else None
        lag = asyncio.create_task(_watch_lag(record))

        async def one(shot: Shot, intended: float) -> None:
            n = self._next
            # The least busy connection; ties go round-robin, so an idle start spreads too.
            size = len(self._stubs)
            c = min(range(size), key=lambda i: (self._in_flight[i], (i - n) % size))
            self._in_flight[c] += 1
            first: float | None = None
            code, detail = "OK", ""
            try:
                call = self._stubs[c].Rank(
                    shot.request, timeout=shot.deadline_s, metadata=self._metadata
                )
                async for _ in call:
                    if first is None:
                        first = time.perf_counter() - intended
            except grpc.aio.AioRpcError as error:
                code, detail = error.code().name, error.details() or ""
            finally:
                self._in_flight[c] -= 1
            end = time.perf_counter()
            record.record(shot.kind, code, int(end - started), end - intended, first, detail)

        issued = 0
        if load.rps > 0:
            pending: set[asyncio.Task[None]] = set()
            interval = 1.0 / load.rps
            tick = started + start_offset * interval
            while tick < stop_at and issued < limit:
                await asyncio.sleep(max(0.0, tick - time.perf_counter()))
                task = asyncio.create_task(one(self._shot(), tick))
                pending.add(task)
                task.add_done_callback(pending.discard)
                issued += 1
                tick += interval
            await asyncio.gather(*pending)
        else:

            async def loop() -> None:
                nonlocal issued
                while issued < limit and time.perf_counter() < stop_at:
                    issued += 1
                    await one(self._shot(), time.perf_counter())

            await asyncio.gather(*(loop() for _ in range(load.concurrency)))
        lag.cancel()
        record.elapsed = time.perf_counter() - started
        record.cpu_seconds = time.process_time() - cpu
        record.loop_busy = (time.thread_time() - loop_cpu) / max(record.elapsed, 1e-9)
        if ticker is not None:
            ticker.finish()
        return record


async def _watch_lag(record: Recording) -> None:
    """How late the loop wakes from a short sleep: a busy loop delays every call
    it times by about as much."""
    while True:
        due = time.perf_counter() + LAG_PROBE_SECONDS
        await asyncio.sleep(LAG_PROBE_SECONDS)
        record.lag(max(0.0, time.perf_counter() - due))


class _Ticker:
    """Reports each second once it is over, a second with no calls included, and
    at the end whatever partial second is left."""

    def __init__(self, record: Recording, started: float, on_second: OnSecond) -> None:
        self._record = record
        self._started = started
        self._on_second = on_second
        self._reported = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            due = self._started + self._reported + 1
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            self._report(self._reported + 1)

    def _report(self, upto: int) -> None:
        self._record.pad(upto)
        while self._reported < upto:
            self._on_second(self._reported, self._record)
            self._reported += 1

    def finish(self) -> None:
        self._task.cancel()
        self._report(len(self._record.seconds))
