"""The stream's user features: the batch formula, carried forward event by event.

The formula. Let T be the time of the newest batch snapshot, and B the basis of
the events before T (features.engineering.ItemBasis: each item's 1/|C_i| and the
conversion rate). Each user keeps three running sums, which the snapshot gives
at T: raw_u = sum over the user's events of w_type / |C_i| * v_i (v_i the item
vector), n_u events and k_u conversions. An event (u, i, type, ts) with ts >= T
adds

    raw_u += EVENT_WEIGHTS[type] * B.inverse[i] * v_i
    n_u   += 1
    k_u   += 1 if type is a conversion (CONVERSION_EVENTS)

and the served features are finished_user_features(raw_u, n_u, k_u, B.rate). That
is the batch formula over every event so far with the item statistics frozen at
T: streaming a day of events onto a snapshot equals user_features(aggregates of
the events up to the day's end, vectors, basis at T), which a test holds. A
later backfill recomputes everything exactly, the item statistics too.

An event with ts < T is late: it is kept (the offline event files, so the next
backfill counts it) but not streamed, since the snapshot at T is where the
batch path says such an event belongs.

Each user also keeps their most recent items: the last RECENT_ITEMS distinct
items they touched, newest first, by event time then by arrival.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from features.engineering import (
    Aggregates,
    ItemBasis,
    UserFeatures,
    finished_user_features,
    item_basis,
    raw_interest,
)
from features.schema import CONVERSION_EVENTS, EVENT_WEIGHTS

RECENT_ITEMS = 20
MICROS = 1_000_000


@dataclass
class UserState:
    """One user's running sums, and the time stamped on their last written row."""

    raw: np.ndarray  # float64 [D]
    events: float
    conversions: float
    recent: list[str] = field(default_factory=list)  # newest first
    recent_ts: list[int] = field(default_factory=list)  # their event times, micros
    row_ts: int = 0  # micros; strictly increasing per user (Feast keeps only newer rows)


@dataclass(frozen=True)
class Snapshot:
    """The batch snapshot the stream builds on: its time, basis and running sums."""

    at: datetime
    item_ids: list[str]
    vectors: np.ndarray  # float64 [items, D]
    basis: ItemBasis
    aggregates: Aggregates
    user_index: dict[str, int]
    # Events before T, per user, for their recent items: user index, item index and
    # time (micros), sorted by user then time (stable: file order among equal times).
    history: tuple[np.ndarray, np.ndarray, np.ndarray]
    item_index: dict[str, int]  # item id -> row of vectors, built once per snapshot

    @property
    def at_micros(self) -> int:
        return datetime_micros(self.at)

    def item_positions(self, item_ids: Sequence[str]) -> np.ndarray:
        return np.fromiter(map(self.item_index.__getitem__, item_ids), np.int64, len(item_ids))

    def initial(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        """The users' states at T: the snapshot's sums, or zeros for a new user."""
        known = [u for u in user_ids if u in self.user_index]
        rows = np.asarray([self.user_index[u] for u in known], dtype=np.int64)
        sums = Aggregates(
            sp.csr_matrix(self.aggregates.weights[rows]),
            sp.csr_matrix(self.aggregates.conversions[rows]),
            self.aggregates.user_events[rows],
            self.aggregates.user_conversions[rows],
        )
        raw = raw_interest(sums, self.vectors, self.basis)
        states = {
            user: UserState(np.zeros(self.vectors.shape[1]), 0.0, 0.0, row_ts=self.at_micros)
            for user in user_ids
        }
        for k, user in enumerate(known):
            recent, recent_ts = self._recent(int(rows[k]))
            states[user] = UserState(
                raw[k],
                float(sums.user_events[k]),
                float(sums.user_conversions[k]),
                recent,
                recent_ts,
                self.at_micros,
            )
        return states

    def _recent(self, row: int) -> tuple[list[str], list[int]]:
        users, items, times = self.history
        lo, hi = np.searchsorted(users, [row, row + 1])
        recent: list[str] = []
        recent_ts: list[int] = []
        for k in range(int(hi) - 1, int(lo) - 1, -1):  # newest first
            item = self.item_ids[int(items[k])]
            if item not in recent:
                recent.append(item)
                recent_ts.append(int(times[k]))
                if len(recent) == RECENT_ITEMS:
                    break
        return recent, recent_ts


def snapshot_of(
    at: datetime,
    item_ids: list[str],
    vectors: np.ndarray,
    aggregates: Aggregates,
    user_index: dict[str, int],
    history: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> Snapshot:
    users, items, times = history
    order = np.lexsort((np.arange(users.size), times, users))
    return Snapshot(
        at,
        item_ids,
        vectors.astype(np.float64),
        item_basis(aggregates),
        aggregates,
        user_index,
        (users[order], items[order], times[order]),
        {item: i for i, item in enumerate(item_ids)},
    )


def datetime_micros(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MICROS + delta.microseconds


def micros_datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // MICROS, UTC).replace(microsecond=micros % MICROS)


@dataclass(frozen=True)
class Applied:
    """What one batch did: the users it changed, and the late events it left out."""

    users: list[str]
    late: int


def apply(snapshot: Snapshot, states: dict[str, UserState], events: pa.Table) -> Applied:
    """Fold events (log order; columns user_id, item_id, event_type, ts) into states,
    which must hold every user the events name (Snapshot.initial for a new one)."""
    micros = pc.cast(events["ts"], pa.int64()).to_numpy(zero_copy_only=False)
    streamed = micros >= snapshot.at_micros
    late = int((~streamed).sum())
    if late:
        events = events.filter(pa.array(streamed))
        micros = micros[streamed]
    users: list[str] = events["user_id"].to_pylist()
    items: list[str] = events["item_id"].to_pylist()
    kinds: list[str] = events["event_type"].to_pylist()
    positions = snapshot.item_positions(items)
    weights = np.asarray([EVENT_WEIGHTS[k] for k in kinds]) * snapshot.basis.inverse[positions]
    touched = list(dict.fromkeys(users))
    row = {user: r for r, user in enumerate(touched)}
    rows = np.asarray([row[u] for u in users], dtype=np.int64)
    delta = np.zeros((len(touched), snapshot.vectors.shape[1]))
    np.add.at(delta, rows, weights[:, np.newaxis] * snapshot.vectors[positions])
    counts = np.bincount(rows, minlength=len(touched))
    converted = np.isin(np.asarray(kinds, dtype=object), list(CONVERSION_EVENTS))
    conversions = np.bincount(rows, weights=converted.astype(np.float64), minlength=len(touched))
    newest = np.full(len(touched), -1, dtype=np.int64)
    np.maximum.at(newest, rows, micros)
    for r, user in enumerate(touched):
        state = states[user]
        state.raw = state.raw + delta[r]
        state.events += float(counts[r])
        state.conversions += float(conversions[r])
        state.row_ts = max(int(newest[r]), state.row_ts + 1)
    for user, item, at in zip(users, items, micros.tolist(), strict=True):
        _touch(states[user], item, at)
    return Applied(touched, late)


def _touch(state: UserState, item: str, at: int) -> None:
    """Put item among the user's recent items, where its time places it."""
    if item in state.recent:
        k = state.recent.index(item)
        if state.recent_ts[k] > at:
            return  # seen later already
        del state.recent[k], state.recent_ts[k]
    k = 0
    while k < len(state.recent_ts) and state.recent_ts[k] > at:
        k += 1
    state.recent.insert(k, item)
    state.recent_ts.insert(k, at)
    del state.recent[RECENT_ITEMS:], state.recent_ts[RECENT_ITEMS:]


def served(snapshot: Snapshot, states: Iterable[UserState]) -> UserFeatures:
    """The users' served features from their states, in order."""
    listed = list(states)
    width = snapshot.vectors.shape[1]
    raw = np.asarray([s.raw for s in listed]).reshape(len(listed), width)
    events = np.asarray([s.events for s in listed], dtype=np.float64)
    conversions = np.asarray([s.conversions for s in listed], dtype=np.float64)
    return finished_user_features(raw, events, conversions, snapshot.basis.rate)


def snapshot_time(user_features_dir: str | object) -> datetime | None:
    """The event time of the newest user snapshot file; None before any backfill."""
    from pathlib import Path

    files = sorted(Path(str(user_features_dir)).glob("*.parquet"))
    if not files:
        return None
    column = pq.read_table(files[-1], columns=["event_timestamp"])["event_timestamp"]
    if not len(column):
        return None
    moment: datetime = pc.max(column).as_py()
    return moment
