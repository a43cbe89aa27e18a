"""A ranking as an ordered list of stages, wired and checked once, at build."""

from __future__ import annotations

import time
from collections.abc import Sequence

from features.rows import UserRow
from server.ranking.batch import FRESH, ITEM_ID, Batch, Ranking, RankQuery
from server.ranking.explain import explain
from server.ranking.stage import Stage

HEURISTIC_VERSION = "heuristic"


class WiringError(ValueError):
    """The stages do not fit together; raised at build, never while ranking."""


def check_wiring(stages: Sequence[Stage], given: Sequence[str]) -> None:
    """Every column a stage needs is given by the request or by an earlier stage,
    and every stage has a name of its own (its timings are kept under it)."""
    available = set(given)
    seen: set[str] = set()
    for position, stage in enumerate(stages):
        if stage.name in seen:
            raise WiringError(f"two stages are named {stage.name!r}; each needs its own name")
        seen.add(stage.name)
        for column in stage.needs:
            if column not in available:
                raise WiringError(_missing(stages, position, column))
        available.update(stage.gives)


def _missing(stages: Sequence[Stage], position: int, column: str) -> str:
    stage = stages[position]
    later = [s.name for s in stages[position + 1 :] if column in s.gives]
    where = (
        f"only the later stage {later[0]!r} gives it; move that stage before it"
        if later
        else "no earlier stage gives it"
    )
    return f"stage {stage.name!r} needs column {column!r}, but {where}"


class Pipeline:
    """Runs its stages in order over one request's batch, timing each by name."""

    def __init__(
        self, stages: Sequence[Stage], version: str, given: Sequence[str] = (ITEM_ID,)
    ) -> None:
        check_wiring(stages, given)
        self.stages = tuple(stages)
        self._named = tuple((stage.name, stage) for stage in self.stages)
        self.version = version  # the model's, or HEURISTIC_VERSION

    @property
    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def run(self, query: RankQuery, user: UserRow, served: str = FRESH) -> Ranking:
        """Rank the query's candidates for the user, whose row was `served` so."""
        batch = Batch(query, user)
        timings: dict[str, float] = {}
        clock = time.perf_counter
        last = clock()
        for name, stage in self._named:
            stage(batch)
            now = clock()
            timings[name] = now - last
            last = now
        return self._ranking(batch, timings, served)

    def _ranking(self, batch: Batch, timings: dict[str, float], served: str) -> Ranking:
        user = batch.user
        now = time.time()
        return Ranking(
            item_ids=batch.ids,
            scores=batch["score"],
            cold_start=not user.known,
            user_age=now - user.timestamp if user.known else -1.0,
            model_version=self.version,
            timings=timings,
            parts=explain(batch, now) if batch.query.explain else None,
            served=served,
            removed=batch.removed if batch.query.explain else None,
        )
