"""UserFallback: stale rows, cold start, the held-down store and its probe, on a fake
store and a fake clock (the real Redis outage is tests/e2e/test_store_failure.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from features.rows import UserRow
from server.errors import FeatureStoreUnavailable
from server.ranking.batch import DEGRADED, FRESH, STALE
from server.sources.user_fallback import FAILURES_TO_OPEN, PROBE_USER, Policy, UserFallback


class Store:
    def __init__(self) -> None:
        self.up = True
        self.reads: list[str] = []

    async def read(self, user_id: str) -> UserRow:
        self.reads.append(user_id)
        if not self.up:
            raise FeatureStoreUnavailable("redis did not answer within 0.05s")
        return UserRow(np.full(2, float(len(self.reads)), np.float32), 0.5, 1.0, True, 10.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


UNKNOWN = UserRow.unknown(False)


def fallback(store: Store, clock: Clock, **policy: object) -> UserFallback:
    return UserFallback(store.read, Policy(**policy), UNKNOWN, clock)  # type: ignore[arg-type]


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_a_failed_read_serves_the_row_read_before_then_cold_start() -> None:
    store, clock = Store(), Clock()
    users = fallback(store, clock, stale_seconds=60.0)
    row, served = run(users.user("u1"))
    assert served == FRESH and row.vector.tolist() == [1.0, 1.0]
    store.up = False
    clock.now += 60.0
    stale, served = run(users.user("u1"))
    assert served == STALE and stale is row
    assert run(users.user("u2")) == (UNKNOWN, DEGRADED)
    assert users.served == {FRESH: 1, STALE: 1, DEGRADED: 1}
    assert users.failed_reads == 2
    assert users.store_up  # two failures in a row: not yet held down


def test_a_row_older_than_stale_seconds_is_not_served() -> None:
    store, clock = Store(), Clock()
    users = fallback(store, clock, stale_seconds=60.0)
    run(users.user("u1"))
    store.up = False
    clock.now += 60.5
    assert run(users.user("u1")) == (UNKNOWN, DEGRADED)


def test_the_recent_rows_are_bounded_oldest_read_out_first() -> None:
    store, clock = Store(), Clock()
    users = fallback(store, clock, capacity=2)
    for user in ("u1", "u2", "u1", "u3"):  # u1 read again: u2 is now the oldest
        run(users.user(user))
    store.up = False
    served = {user: run(users.user(user))[1] for user in ("u1", "u2", "u3")}
    assert served == {"u1": STALE, "u2": DEGRADED, "u3": STALE}


def test_failures_in_a_row_hold_the_store_down_until_a_probe_answers() -> None:
    store, clock = Store(), Clock()
    users = fallback(store, clock)
    store.up = False
    for _ in range(FAILURES_TO_OPEN):
        run(users.user("u1"))
    assert not users.store_up and users.down_since == 1000.0
    reads = len(store.reads)
    assert run(users.user("u1"))[1] == DEGRADED
    assert len(store.reads) == reads  # held down: calls do not wait on it
    assert run(users.probe()) is False
    store.up = True
    assert run(users.probe()) is True
    assert store.reads[-1] == PROBE_USER
    assert users.store_up
    assert run(users.user("u1"))[1] == FRESH


def test_a_success_between_failures_keeps_the_store_up() -> None:
    store, clock = Store(), Clock()
    users = fallback(store, clock)
    for _ in range(3):
        store.up = False
        for _ in range(FAILURES_TO_OPEN - 1):
            run(users.user("u1"))
        store.up = True
        run(users.user("u1"))
    assert users.store_up


def test_fail_policy_raises_unavailable_and_cannot_serve_while_down() -> None:
    store, clock = Store(), Clock()
    users = fallback(store, clock, on_failure="fail")
    run(users.user("u1"))
    store.up = False
    for _ in range(FAILURES_TO_OPEN + 1):
        with pytest.raises(FeatureStoreUnavailable, match=r"did not answer within 0\.05s"):
            run(users.user("u1"))
    assert not users.can_serve
    degrading = fallback(Store(), clock)
    degrading._failed(FeatureStoreUnavailable("x"))
    assert degrading.can_serve


def test_watch_reports_a_change_of_can_serve_and_recovers_by_itself() -> None:
    store, clock = Store(), Clock()
    users = fallback(store, clock, on_failure="fail", probe_seconds=0.01)
    changes: list[bool] = []

    async def scenario() -> None:
        async def on_change(can_serve: bool) -> None:
            changes.append(can_serve)

        watch = asyncio.create_task(users.watch(on_change))
        store.up = False
        for _ in range(FAILURES_TO_OPEN):
            with pytest.raises(FeatureStoreUnavailable):
                await users.user("u1")
        while changes != [False]:
            await asyncio.sleep(0.005)
        store.up = True
        while changes != [False, True]:
            await asyncio.sleep(0.005)
        watch.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert users.store_up
