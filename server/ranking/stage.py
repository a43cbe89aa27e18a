"""The shape every stage of a ranking has."""

from __future__ import annotations

from typing import Protocol

from server.ranking.batch import Batch


class Stage(Protocol):
    """One named step of a ranking. It reads the columns in `needs`, which an
    earlier stage (or the request) must give, and writes every column in
    `gives`. A stage holds no per-request state and does no I/O."""

    @property
    def name(self) -> str: ...

    @property
    def needs(self) -> tuple[str, ...]: ...

    @property
    def gives(self) -> tuple[str, ...]: ...

    def __call__(self, batch: Batch) -> None: ...
