"""Diversity: at most M items of one category in the first ranks."""

from __future__ import annotations

import numpy as np

from server.ranking.batch import DIVERSITY, Batch


class Diversity:
    """With max_per_category M, the first `window` ranks (diversity_window, else
    top_k, else all) hold at most M items of any one category; the items over the
    cap move to just after the window, in their order, and everything else keeps
    its order. An item outside the catalogue has no category and is never capped.
    Marks the moved rows in `rule` / `rule_from`."""

    name = "diversity"
    needs = ("catalogue_row", "rule", "rule_from")
    gives = ("rule", "rule_from")

    def __call__(self, batch: Batch) -> None:
        rules = batch.query.rules
        if not rules.max_per_category or batch.catalogue is None or not len(batch):
            return
        rows = batch["catalogue_row"]
        category = np.where(rows >= 0, batch.catalogue.category[np.maximum(rows, 0)], -1)
        window = rules.diversity_window or batch.query.top_k or len(batch)
        order, moved = capped_order(category, rules.max_per_category, window)
        if moved.size:
            mark(batch, order, moved, DIVERSITY)


def capped_order(category: np.ndarray, cap: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The new order of rows (ranked best first), and the rows moved down."""
    placed: list[int] = []
    deferred: list[int] = []
    counts: dict[int, int] = {}
    n = category.size
    position = 0
    for position, code in enumerate(category.tolist()):
        if len(placed) == window:
            break
        if code < 0 or counts.get(code, 0) < cap:
            placed.append(position)
            if code >= 0:
                counts[code] = counts.get(code, 0) + 1
        else:
            deferred.append(position)
    else:
        position = n
    order = np.array(placed + deferred + list(range(position, n)), dtype=np.int64)
    return order, np.array(deferred, dtype=np.int64)


def mark_reordered(batch: Batch, order: np.ndarray, rule: int) -> None:
    """Reorder the batch, marking every row whose rank the order changed."""
    moved = np.flatnonzero(order != np.arange(order.size))
    if moved.size:
        mark(batch, order, order[moved], rule)


def mark(batch: Batch, order: np.ndarray, moved: np.ndarray, rule: int) -> None:
    """Reorder the batch; the moved rows (positions before it) get the rule and
    their rank before it, unless an earlier rule already marked them."""
    marks = batch["rule"].copy()
    before = batch["rule_from"].copy()
    fresh = moved[marks[moved] == 0]
    marks[fresh] = rule
    before[fresh] = fresh + 1
    batch["rule"] = marks
    batch["rule_from"] = before
    batch.take(order)
