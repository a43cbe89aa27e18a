"""The FeatureSource port: where a ranking's features come from.

Implementations: FeastFeatures (server/sources/feast_provider.py), straight
from a Feast online store (SQLite, Redis, Redis Cluster), and CachedFeatures
(server/sources/cache_refresh.py), items from the in-memory cache. One test
suite (tests/integration/test_feature_sources.py) runs against every one of
them and holds each equal to Feast's own get_online_features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from features.rows import ItemRows, UserRow


class FeatureSource(Protocol):
    """A user's row and candidates' rows, as arrays.

    The contract every implementation keeps:
    - order is kept: row i of items(ids) is ids[i];
    - an id the store does not know comes back marked unknown (known=False, its
      features zeros, its timestamp 0), never dropped: items(ids) has exactly
      len(ids) rows, and user() always returns a row;
    - one batched read of the store per call and view, whatever the number of
      ids (or none, from a cache), never one per id;
    - a store that cannot be read raises server.errors.FeatureStoreUnavailable.
    """

    async def user(self, user_id: str) -> UserRow:
        """The user's row; awaited, so a network store never blocks the event loop."""
        ...

    def items(self, item_ids: Sequence[str]) -> ItemRows:
        """One row per id, in the order given."""
        ...
