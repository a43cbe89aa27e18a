"""Hot model swaps: a running server follows the registry's CURRENT.

Every `model_poll_seconds` it reads CURRENT. A new version is loaded off the
event loop, checked against its FeatureService, warmed with one ranking of
real catalogue items, and only then swapped in, by one assignment that each
call reads once: a call runs wholly on the old model or wholly on the new one,
and none fails for the swap. A version that cannot be loaded, does not match,
or fails its warm-up is rejected: logged, counted, and not tried again until
CURRENT names another version; the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from features.workspace import Workspace
from server.config import Settings
from server.errors import RegistryUnavailable, StartupError
from server.metrics import Metrics
from server.model_runtime import OnnxRanker, check_wiring
from server.ranking.batch import RankQuery
from server.ranking.build import GIVEN_ONLY, Retrieval, build_pipeline
from server.ranking.pipeline import Pipeline
from server.sources.cache_refresh import CachedFeatures
from training import registry

log = logging.getLogger(__name__)
WARM_UP_ITEMS = 100


@dataclass(frozen=True)
class Serving:
    """The model a server serves, and since when (unix seconds)."""

    version: str
    loaded_at: float
    feature_service: str = ""


class ModelSwap:
    def __init__(
        self,
        settings: Settings,
        features: CachedFeatures,
        serving: Serving,
        serve: Callable[[Pipeline], None],
        metrics: Metrics,
        retrieval: Retrieval = GIVEN_ONLY,
    ) -> None:
        self._retrieval = retrieval  # the serving pipeline's, kept across swaps
        self._workspace: Workspace = settings.workspace
        self._threads = settings.model_threads
        self._interval = settings.model_poll_seconds
        self._features = features
        self._serve = serve
        self._metrics = metrics
        self.serving = serving
        self._rejected: str | None = None
        metrics.model.show(serving.version)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:  # a poll must never end the loop; the next one tries again
                log.exception("model poll failed")

    async def check(self) -> str:
        """One poll: 'same', 'swapped', 'rejected', 'retry' (the registry could not be
        read) or 'none' (no CURRENT)."""
        models = self._workspace.models_dir
        version = await asyncio.to_thread(registry.current_version, models)
        if version is None:
            return "none"
        if version in (self.serving.version, self._rejected):
            return "same"
        loop = asyncio.get_running_loop()
        try:
            # The FeatureService is checked against the registry as it is now; one that
            # cannot be read says nothing about the model: try again at the next poll.
            await loop.run_in_executor(None, self._features.feast.refresh_registry)
        except RegistryUnavailable as error:
            log.warning(
                "model %s not checked yet, %s keeps serving: %s", version, self.serving, error
            )
            return "retry"
        try:
            pipeline, service = await loop.run_in_executor(None, self._prepare, version)
            user, _ = await self._features.users.user("__warm_up__")  # the store may be down
            items = self._features.cache.cached_ids()[:WARM_UP_ITEMS] or ["__warm_up__"]
            query = RankQuery("__warm_up__", items, 0, False)
            await loop.run_in_executor(None, pipeline.run, query, user)
        except Exception as error:
            self._rejected = version
            self._metrics.rejected_models.inc(version)
            log.error("model %s rejected, %s keeps serving: %s", version, self.serving, error)
            return "rejected"
        self._serve(pipeline)
        self.serving = Serving(version, time.time(), service)
        self._rejected = None
        self._metrics.model.show(version)
        log.info("model %s swapped in", version)
        return "swapped"

    def _prepare(self, version: str) -> tuple[Pipeline, str]:
        """The new version's pipeline, checked, and its FeatureService."""
        model = OnnxRanker.load(self._workspace.models_dir, version, self._threads)
        check_wiring(model.info, self._features.feast.service_refs(model.info.feature_service))
        if model.info.embeddings != self._features.feast.embeddings:
            # The item cache and the user read carry embeddings or not from startup.
            need = "needs" if model.info.embeddings else "does not use"
            raise StartupError(
                f"model {version} {need} embeddings, unlike the one this server started "
                "with; roll it out with a restart"
            )
        info = model.info
        pipeline = build_pipeline(
            self._features, model, version, info.embeddings, self._retrieval, info.query
        )
        return pipeline, model.info.feature_service
