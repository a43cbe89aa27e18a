"""Which calls run, and where: the in-flight limit, the deadline checks, and the
choice between the event loop and the executor."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import TypeVar

import grpc

from server.config import Settings
from server.errors import DeadlineExceeded, Overloaded

T = TypeVar("T")


class Admission:
    def __init__(self, settings: Settings, executor: Executor) -> None:
        self._limit = settings.max_in_flight
        self._inline_max = settings.inline_max_candidates
        self._executor = executor
        self.in_flight = 0
        self.shed = 0  # calls refused for the in-flight limit

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the in-flight places for the call, or shed it (Overloaded)."""
        self.in_flight += 1
        try:
            if self.in_flight > self._limit:
                self.shed += 1
                raise Overloaded(
                    f"server is at its limit of {self._limit} concurrent rankings; "
                    "retry with backoff"
                )
            yield
        finally:
            self.in_flight -= 1

    async def run(self, candidates: int, work: Callable[..., T], *args: object) -> T:
        """work(*args), on the event loop for a small ranking (about a millisecond,
        cheaper than a hop to a thread), on the executor for a large one, so one big
        call never holds up the small ones, the health checks or the deadlines."""
        if candidates <= self._inline_max:
            return work(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)


def check_deadline(context: grpc.aio.ServicerContext, when: str) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded(
            f"the call's deadline passed {when}; allow more time or fewer candidates"
        )


def cancelled_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """How a call the peer abandoned ended: past its deadline, or cancelled."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED
