"""LogEvents' work, without gRPC: check each event, write the good ones to the log.

The checks are the backfill's own (features.validation.event_problems) after
the API's own (an event id, and the id and query lengths): a rejected event is
never written and its reason goes back to the caller. The write goes to the
event log (features.event_log), which dedups by id and is durable before it
returns; it runs on a thread, off the event loop (an fsync, or a Redis round trip).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from features.event_log import LOG_SCHEMA, EventLog
from features.validation import event_problems
from server.errors import InvalidRequest


@dataclass(frozen=True)
class EventLimits:
    max_events: int  # per call
    max_id_length: int
    max_query_length: int
    max_backlog: int  # events in the log the worker has not applied


@dataclass(frozen=True)
class Incoming:
    """A call's events as columns; ts is None where the event has no timestamp."""

    event_id: list[str]
    user_id: list[str]
    item_id: list[str]
    event_type: list[str]
    ts: list[datetime | None]
    query: list[str | None]

    def __len__(self) -> int:
        return len(self.event_id)


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # index, id, reason


class KnownItems:
    """The catalogue's ids as an Arrow array, rebuilt only when the source changes."""

    def __init__(self, ids: Callable[[], Sequence[str]], version: Callable[[], object]) -> None:
        self._ids = ids
        self._version = version
        self._seen: object = None
        self._array = pa.array([], pa.string())

    def array(self) -> pa.Array:
        version = self._version()
        if version != self._seen or not len(self._array):
            self._array = pa.array(list(self._ids()), pa.string())
            self._seen = version
        return self._array


class EventIntake:
    def __init__(self, log: EventLog, known: KnownItems, limits: EventLimits) -> None:
        self._log = log
        self._known = known
        self._limits = limits

    def problems(self, events: Incoming, now: datetime | None = None) -> list[str | None]:
        """Per event, why it cannot be written, or None."""
        limits = self._limits
        own: list[str | None] = []
        for event_id, user, item, query in zip(
            events.event_id, events.user_id, events.item_id, events.query, strict=True
        ):
            if not event_id:
                own.append("null or empty event_id")
            elif max(len(event_id), len(user), len(item)) > limits.max_id_length:
                own.append(f"an id over {limits.max_id_length} characters")
            elif query is not None and len(query) > limits.max_query_length:
                own.append(f"query over {limits.max_query_length} characters")
            else:
                own.append(None)
        table = self._table(events)
        shared = event_problems(table, self._known.array(), now).to_pylist()
        return [mine or theirs for mine, theirs in zip(own, shared, strict=True)]

    @staticmethod
    def _table(events: Incoming) -> pa.Table:
        return pa.table(
            {
                "event_id": pa.array(events.event_id, pa.string()),
                "user_id": pa.array(events.user_id, pa.string()),
                "item_id": pa.array(events.item_id, pa.string()),
                "event_type": pa.array(events.event_type, pa.string()),
                "ts": pa.array(events.ts, pa.timestamp("us", tz="UTC")),
                "session_id": pa.nulls(len(events), pa.string()),
                "query": pa.array(events.query, pa.string()),
            }
        )

    async def log(self, events: Incoming) -> Outcome:
        """Check, then write; EventLogFull and EventLogUnavailable pass to the caller
        with nothing written."""
        if not len(events):
            raise InvalidRequest("events is empty; send at least one event")
        if len(events) > self._limits.max_events:
            raise InvalidRequest(
                f"{len(events)} events; the limit is {self._limits.max_events} per call"
            )
        problems = self.problems(events)
        outcome = Outcome()
        good = [i for i, p in enumerate(problems) if p is None]
        for i, problem in enumerate(problems):
            if problem is not None:
                outcome.rejected.append((i, events.event_id[i], problem))
        if good:
            table = self._table(events).take(pa.array(good)).select(LOG_SCHEMA.names)
            new = await asyncio.to_thread(
                self._log.append, table.cast(LOG_SCHEMA), self._limits.max_backlog
            )
            outcome.accepted = sum(new)
            outcome.duplicates = len(new) - outcome.accepted
        return outcome
