"""Filters: candidates no request may see, removed before the features are read."""

from __future__ import annotations

import numpy as np

from server.ranking.batch import Batch


class Filters:
    """Removes the blocked ids (the server's list and the request's), the user's
    interacted items when the query excludes them, and with query_matches_only the
    candidates the query does not match. Every removal is kept in batch.removed
    with its rule; the rest keep their order. Gives no column: it drops rows."""

    name = "filters"
    needs = ("bm25",)
    gives = ()

    def __init__(self, blocked: frozenset[str] = frozenset()) -> None:
        self._blocked = blocked  # the configured block list

    def __call__(self, batch: Batch) -> None:
        query = batch.query
        ids = batch.ids
        blocked = self._blocked | query.blocked if query.blocked else self._blocked
        # Retrieval has left them out already: only given candidates need the check.
        exclude = query.exclude_interacted and bool(query.candidates)
        interacted = frozenset(batch.user.interacted) if exclude else frozenset()
        no_match = query.matches_only and bool(query.terms)
        if not (blocked or interacted or no_match):
            return
        misses = batch["bm25"] <= 0 if no_match else None
        keep = np.ones(len(ids), dtype=bool)
        removed = batch.removed
        for i, item in enumerate(ids):
            if item in blocked:
                rule = "blocked"
            elif item in interacted:
                rule = "interacted"
            elif misses is not None and misses[i]:
                rule = "no_match"
            else:
                continue
            keep[i] = False
            removed.append((item, rule))
        if not keep.all():
            batch.take(np.flatnonzero(keep))
