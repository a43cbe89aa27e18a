"""A ranking's user row when the online store fails: degrade, don't fail.

Each user read is bounded by the store clients' own timeout
(settings.user_read_timeout_seconds). When a read fails, the call is served:
- from the user's row as read within the last `stale_seconds`, flagged STALE;
- failing that, cold-start by item bias (the item cache is in memory), flagged
  DEGRADED;
- or, with on_failure "fail", not at all: FeatureStoreUnavailable (UNAVAILABLE).

After `FAILURES_TO_OPEN` failures in a row the store is held down: calls stop
trying it, so a hung store costs no call its timeout, and a background probe
(`watch`) reads it every `probe_seconds` until it answers. Service then
recovers by itself, within one probe interval of the store coming back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from features.rows import UserRow
from server.config import Settings
from server.errors import FeatureStoreUnavailable
from server.ranking.batch import DEGRADED, FRESH, STALE

log = logging.getLogger(__name__)

# One slow read is noise; three in a row is a store that is down or hung.
FAILURES_TO_OPEN = 3
PROBE_USER = "__store_probe__"


@dataclass(frozen=True)
class Policy:
    on_failure: str = "degrade"  # or "fail" (server.config.ON_STORE_FAILURE)
    stale_seconds: float = 300.0
    capacity: int = 100_000
    probe_seconds: float = 0.5

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            settings.on_store_failure,
            settings.stale_user_seconds,
            settings.stale_user_capacity,
            settings.store_probe_seconds,
        )


class UserFallback:
    """Reads users through `read` and keeps the recent rows to fall back on."""

    def __init__(
        self,
        read: Callable[[str], Awaitable[UserRow]],
        policy: Policy,
        unknown: UserRow,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._policy = policy
        self._unknown = unknown
        self._clock = clock
        # user id -> (row, when read); insertion order is read order, oldest first.
        self._recent: dict[str, tuple[UserRow, float]] = {}
        self._failures = 0  # in a row
        self.down_since: float | None = None
        self.last_error = ""
        self.failed_reads = 0
        self.served = {FRESH: 0, STALE: 0, DEGRADED: 0}  # calls, by how they were served

    @property
    def store_up(self) -> bool:
        return self.down_since is None

    @property
    def degrades(self) -> bool:
        """Whether calls are served without the store when it fails (else they fail)."""
        return self._policy.on_failure != "fail"

    @property
    def can_serve(self) -> bool:
        """False only when no call can be answered: the store is down and calls must fail."""
        return self.store_up or self.degrades

    async def user(self, user_id: str) -> tuple[UserRow, str]:
        """The user's row, and how it was served: FRESH, STALE or DEGRADED."""
        if self.down_since is None:
            try:
                row = await self._read(user_id)
            except FeatureStoreUnavailable as error:
                self._failed(error)
            else:
                self._failures = 0
                self._remember(user_id, row)
                self.served[FRESH] += 1
                return row, FRESH
        return self._fallback(user_id)

    def _remember(self, user_id: str, row: UserRow) -> None:
        recent = self._recent
        recent.pop(user_id, None)  # re-inserted last: the dict stays in read order
        recent[user_id] = (row, self._clock())
        if len(recent) > self._policy.capacity:
            del recent[next(iter(recent))]

    def _failed(self, error: FeatureStoreUnavailable) -> None:
        self.failed_reads += 1
        self.last_error = str(error)
        self._failures += 1
        if self._failures >= FAILURES_TO_OPEN and self.down_since is None:
            self.down_since = self._clock()
            then = "are served stale or cold-start" if self.degrades else "fail (UNAVAILABLE)"
            log.error("online store down, calls %s until it answers: %s", then, error)

    def _fallback(self, user_id: str) -> tuple[UserRow, str]:
        if not self.degrades:
            raise FeatureStoreUnavailable(self.last_error or "the online store is down")
        kept = self._recent.get(user_id)
        if kept is not None and self._clock() - kept[1] <= self._policy.stale_seconds:
            self.served[STALE] += 1
            return kept[0], STALE
        self.served[DEGRADED] += 1
        return self._unknown, DEGRADED

    async def probe(self) -> bool:
        """One read of the store while it is held down; True (and up again) if it answered."""
        try:
            await self._read(PROBE_USER)
        except FeatureStoreUnavailable as error:
            self.last_error = str(error)
            return False
        if self.down_since is not None:
            log.warning("online store answers again after %.1fs", self._clock() - self.down_since)
        self.down_since = None
        self._failures = 0
        return True

    async def watch(self, on_change: Callable[[bool], Awaitable[None]]) -> None:
        """Probe a held-down store until it answers; on_change(can_serve) whenever that
        differs from what was last reported, starting from True (a server starts SERVING)."""
        serving = True
        while True:
            await asyncio.sleep(self._policy.probe_seconds)
            if self.down_since is not None:
                try:
                    await self.probe()
                except Exception:  # a probe must never end the watch
                    log.exception("online store probe failed")
            if self.can_serve != serving:
                serving = self.can_serve
                await on_change(serving)
