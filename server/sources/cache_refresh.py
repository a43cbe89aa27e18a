"""Keeps the item cache current: notices a materialization and reloads the cache.

The signal is the registry's record of materialization intervals, so servers
on other hosts notice too when they share a SQL registry. The reload builds a
complete new table off the request path, then swaps it in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from features.rows import ItemRows, UserRow
from server.errors import FeatureStoreUnavailable, RegistryUnavailable
from server.retrieval.catalogue import CatalogueIndex
from server.sources.feast_provider import FeastFeatures
from server.sources.item_cache import ItemFeatureCache
from server.sources.user_fallback import Policy, UserFallback

log = logging.getLogger(__name__)


class CachedFeatures:
    """A FeatureSource (server.sources.port): users read per request from the
    store, items from the in-memory cache. While `users` holds the store down,
    or when a miss cannot be read and calls degrade, items come from the cache
    alone (the catalogue, by default), never waiting on the store."""

    def __init__(
        self, feast: FeastFeatures, cache: ItemFeatureCache, users: UserFallback | None = None
    ) -> None:
        self.feast = feast
        self.cache = cache
        self.users = users or UserFallback(feast.user, Policy(), UserRow.unknown(feast.embeddings))

    async def user(self, user_id: str) -> UserRow:
        return await self.feast.user(user_id)

    def items(self, item_ids: Sequence[str]) -> ItemRows:
        if not self.users.store_up:
            return self.cache.cached_rows(item_ids)
        try:
            return self.cache.rows(item_ids)
        except FeatureStoreUnavailable:
            if not self.users.degrades:
                raise
            return self.cache.cached_rows(item_ids)


class CacheRefresher:
    def __init__(
        self,
        feast: FeastFeatures,
        cache: ItemFeatureCache,
        interval: float,
        catalogue: Callable[[], Sequence[str]],
        index: CatalogueIndex | None = None,
    ) -> None:
        self._index = index  # rebuilt with each new table: retrieval reads it
        self._feast = feast
        self._cache = cache
        self._interval = interval
        self._catalogue = catalogue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.token = ""
        self.refreshes = 0
        self.failures = 0  # checks that could not read the registry or the store

    def load(self) -> None:
        """The first, blocking load at start-up."""
        self.token = self._feast.materialization_token()
        self._cache.warm(self._ids())
        if self._index is not None:
            self._index.rebuild(self._cache.table())

    def check(self) -> bool:
        """Reload if a materialization landed since the last load; True if it did."""
        token = self._feast.materialization_token()
        if token == self.token:
            return False
        table = self._cache.build(self._ids())
        if self._index is not None:  # before the swap: both land within one interval
            self._index.rebuild(table)
        self._cache.replace(table)
        self.token = token
        self.refreshes += 1
        log.info("item cache reloaded after materialization %s: %d items", token, len(self._cache))
        return True

    def _ids(self) -> list[str]:
        # The catalogue, then whatever else requests brought in, up to capacity.
        return list(dict.fromkeys([*self._catalogue(), *self._cache.cached_ids()]))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cache-refresh", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except (RegistryUnavailable, FeatureStoreUnavailable) as error:
                # The registry mid-apply or unreachable, or the store down: keep serving
                # the current table, and look again at the next interval.
                self.failures += 1
                log.warning("item cache refresh failed, serving the previous table: %s", error)
            except Exception:
                self.failures += 1
                log.exception("item cache refresh failed; serving the previous table")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
