"""The composition root: load the settings' sources, model and pipeline, check
them against each other, and start the gRPC server."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pyarrow.parquet as pq
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from features.event_log import open_event_log
from features.rows import UserRow
from features.text_encoder import TextEncoder, exported
from features.workspace import Workspace
from server.config import Settings
from server.errors import FeatureStoreUnavailable, StartupError
from server.events.intake import EventIntake, EventLimits, KnownItems
from server.metrics import Metrics, channelz_server_ids
from server.model_runtime import ModelInfo, OnnxRanker, check_wiring
from server.model_swap import ModelSwap, Serving
from server.proto.shoprank.v1 import ranking_pb2 as pb
from server.ranking.batch import RankQuery
from server.ranking.build import GIVEN_ONLY, Retrieval, build_pipeline
from server.ranking.pipeline import Pipeline
from server.retrieval.catalogue import CatalogueIndex, IndexSettings
from server.retrieval.query_encoder import QueryEncoder
from server.sources.cache_refresh import CachedFeatures, CacheRefresher
from server.sources.feast_provider import FeastFeatures
from server.sources.item_cache import ItemFeatureCache
from server.sources.port import FeatureSource
from server.sources.user_fallback import Policy, UserFallback
from server.transport.admission import Admission
from server.transport.auth import BearerAuth, TokenFile
from server.transport.handlers import SERVICE, add_to_server
from server.transport.info import InfoServicer
from server.transport.log_events import EventsServicer
from server.transport.servicer import RankerServicer
from server.transport.tls import server_credentials
from server.transport.tracing import tracer_for
from training import registry

log = logging.getLogger(__name__)
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Loaded:
    """What a server serves with: the pipeline, its feature source, and the cache
    refresher if any."""

    pipeline: Pipeline
    features: FeatureSource
    refresher: CacheRefresher | None = None
    feature_service: str = ""  # the model's; "" for the heuristic
    catalogue: CatalogueIndex | None = None  # what retrieval and search read
    retrieval: Retrieval = GIVEN_ONLY  # the catalogue, block list and query encoder


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    executor: ThreadPoolExecutor
    loaded: Loaded
    servicer: RankerServicer
    swap: ModelSwap | None = None
    swap_task: asyncio.Task[None] | None = None
    store_watch: asyncio.Task[None] | None = None

    @property
    def model_version(self) -> str:
        return self.loaded.pipeline.version

    def serve(self, pipeline: Pipeline) -> None:
        """Swap the pipeline in: one assignment, read once by each call."""
        self.servicer.pipeline = pipeline
        self.loaded.pipeline = pipeline

    async def stop(self, grace: float) -> None:
        for task in (self.swap_task, self.store_watch):
            if task is not None:
                task.cancel()  # the store watch must not set SERVING again while draining
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.loaded.refresher is not None:
            self.loaded.refresher.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)


class _NoTorch:
    """A meta-path finder that refuses torch: Feast imports it when it is installed
    (feast.torch_wrapper, from feast.infra.offline_stores.offline_store, for its
    to-tensor helpers) and falls back when the import fails. Serving never needs it,
    and it took a serving worker from about 455 to 270 MiB of RSS, measured."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None, target: object = None) -> None:
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not imported in a serving process (server.app)")


def refuse_torch() -> None:
    """Keep torch out of this process, where it is installed (the dev and jobs installs)."""
    if "torch" in sys.modules:
        raise StartupError("torch was imported before serving started; serving must not use it")
    if not any(isinstance(finder, _NoTorch) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoTorch())


def catalogue_ids(workspace: Workspace) -> Callable[[], list[str]]:
    """Item ids of the newest offline snapshot; none where this host has no offline store."""

    def read() -> list[str]:
        files = sorted(workspace.item_features_path.glob("*.parquet"))
        if not files:
            return []
        ids: list[str] = pq.read_table(files[-1], columns=["item_id"])["item_id"].to_pylist()
        return ids

    return read


def index_settings(settings: Settings) -> IndexSettings:
    return IndexSettings(
        exact_max_items=settings.exact_retrieval_max_items,
        threads=settings.retrieval_index_threads,
    )


def read_block_list(path: str) -> frozenset[str]:
    """The configured block list: item ids, one per line; blank lines and # comments skipped."""
    if not path:
        return frozenset()
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise StartupError(f"cannot read the block list {path}: {error.strerror}") from None
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def load(settings: Settings) -> Loaded:
    """Open the feature store, warm the item cache, load the current model; refuse a
    model whose inputs do not match its FeatureService."""
    workspace = settings.workspace
    feast = FeastFeatures(workspace, settings.user_read_timeout_seconds)
    feast.load()
    cache = ItemFeatureCache(feast.items, settings.item_cache_capacity)
    index = CatalogueIndex(workspace.catalog_path, index_settings(settings), feast.text_vectors)
    refresher = CacheRefresher(
        feast, cache, settings.cache_refresh_seconds, catalogue_ids(workspace), index
    )
    version = registry.current_version(workspace.models_dir)
    model = None
    if version is None:
        log.warning("no model in %s: ranking by similarity x bias", workspace.models_dir)
    else:
        model = OnnxRanker.load(workspace.models_dir, version, settings.model_threads)
        check_wiring(model.info, feast.service_refs(model.info.feature_service))
        if model.info.embeddings:
            feast.enable_embeddings()
    try:
        refresher.load()
    except FeatureStoreUnavailable as error:
        raise StartupError(f"cannot load the item cache: {error}") from None
    embeddings = model is not None and model.info.embeddings
    users = UserFallback(feast.user, Policy.of(settings), UserRow.unknown(embeddings))
    features = CachedFeatures(feast, cache, users)
    retrieval = Retrieval(
        index, read_block_list(settings.block_list), query_encoder(settings), settings.lexical_share
    )
    query = model is not None and model.info.query
    if model is not None and query:
        warn_query_inputs(model.info, settings, retrieval)
    pipeline = build_pipeline(features, model, version or "", embeddings, retrieval, query)
    service = model.info.feature_service if model is not None else ""
    return Loaded(pipeline, features, refresher, service, index, retrieval)


def warn_query_inputs(info: ModelInfo, settings: Settings, retrieval: Retrieval) -> None:
    """A query-aware model served other relevance parts than it learned from still
    ranks, but worse: say so at start-up."""
    if retrieval.encoder is None:
        log.warning(
            "model %s learned from semantic relevance, and this server has no text "
            "encoder: its semantic inputs are 0",
            info.version,
        )
    elif abs(settings.lexical_share - info.query_share) > 1e-6:
        log.warning(
            "model %s learned from relevance fused at lexical share %.2f; this server "
            "fuses at %.2f (SHOPRANK_LEXICAL_SHARE)",
            info.version,
            info.query_share,
            settings.lexical_share,
        )


def query_encoder(settings: Settings) -> QueryEncoder | None:
    """The language model for queries, where the workspace has it exported and the
    settings weigh the semantic part; None: search by BM25 alone."""
    directory = settings.workspace.text_encoder_dir
    if settings.lexical_share >= 1.0:
        return None
    if not exported(directory):
        log.warning("no text encoder at %s: search is by BM25 alone", directory)
        return None
    # One thread: a query is one short sequence, and the request's other work
    # runs on the other cores (about 5 ms a miss here; bench/search.py).
    encoder = TextEncoder(directory, threads=1).load()
    return QueryEncoder(encoder, settings.query_cache_size)


# A call's objects die by reference count; at Python's default young-generation
# threshold (700) the cyclic GC still scanned them every few calls. 20000 measured
# 3-4% more QPS here, in alternating rounds; cyclic garbage is still collected,
# after at most that many new objects.
GC_YOUNG_THRESHOLD = 20_000


async def warm_up(loaded: Loaded) -> None:
    """One ranking through every stage, then freeze the start-up heap.

    Frozen objects are never scanned again by the cyclic GC, which measured
    here cuts the p99 of the Feast read from about 260 to 90 ms.
    """
    user = await loaded.features.user("__warm_up__")
    loaded.pipeline.run(RankQuery("__warm_up__", ["__warm_up__"], 0, False), user)
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def create_server(
    settings: Settings, loaded: Loaded | None = None, tracer: Any = None
) -> Running:
    """Start serving on settings.host:settings.port (0 picks a free port). `tracer`
    (OpenTelemetry) overrides the one settings.otlp_endpoint would make."""
    loaded = loaded or load(settings)
    metrics = Metrics()
    executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="rank")
    known = channelz_server_ids()
    interceptors = []
    if settings.auth_tokens:
        tokens = TokenFile(Path(settings.auth_tokens))
        tokens.load()
        interceptors.append(BearerAuth(tokens, metrics.denied.inc))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            # gRPC rejects metadata between its soft and hard limits at random: one limit.
            ("grpc.max_metadata_size", settings.max_metadata_bytes),
            ("grpc.absolute_max_metadata_size", settings.max_metadata_bytes),
        ],
    )
    admission = Admission(settings, executor)
    tracer = tracer or tracer_for(settings.otlp_endpoint, "shoprank")
    users = user_fallback(settings, loaded.features)
    servicer = RankerServicer(loaded.pipeline, users, admission, settings, metrics, tracer)
    running: Running | None = None
    events = EventsServicer(event_intake(settings, loaded), metrics)
    add_to_server(servicer, InfoServicer(lambda: describe(running, loaded)), events, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    address = f"{settings.host}:{settings.port}"
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as error:
        raise StartupError(f"cannot listen on {address}: {error}") from None
    await server.start()
    new = channelz_server_ids() - known
    metrics.grpc_calls.watch(new.pop() if len(new) == 1 else None)
    if settings.metrics_port:
        metrics.serve(settings.host, settings.metrics_port)
    for service in ("", SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    if loaded.refresher is not None:
        loaded.refresher.start()
    running = Running(server, port, health_servicer, executor, loaded, servicer)
    if loaded.refresher is not None:
        refresher = loaded.refresher
        metrics.refresh_failures.read_from(lambda: refresher.failures)
    metrics.user_reads.read_from(lambda: users.served)
    metrics.store_up.read_from(lambda: float(users.store_up))

    async def on_store_change(can_serve: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if can_serve else NOT_SERVING
        for service in ("", SERVICE):
            await health_servicer.set(service, status)

    running.store_watch = asyncio.create_task(users.watch(on_store_change))
    if isinstance(loaded.features, CachedFeatures):
        cache = loaded.features.cache
        metrics.cache_hits.read_from(lambda: cache.requested - cache.misses)
        metrics.cache_misses.read_from(lambda: cache.misses)
        metrics.cache_items.read_from(lambda: len(cache))
        metrics.cache_age.read_from(cache.age_seconds)
    encoder = loaded.retrieval.encoder
    if isinstance(encoder, QueryEncoder):
        metrics.query_hits.read_from(lambda: encoder.hits)
        metrics.query_misses.read_from(lambda: encoder.misses)
    if isinstance(loaded.features, CachedFeatures):
        serving = Serving(loaded.pipeline.version, time.time(), loaded.feature_service)
        running.swap = swap = ModelSwap(
            settings,
            loaded.features,
            serving,
            running.serve,
            metrics,
            loaded.retrieval,
        )
        running.swap_task = asyncio.create_task(swap.run())
    return running


def event_intake(settings: Settings, loaded: Loaded) -> EventIntake:
    """LogEvents' checks and log. An event's item must be in the catalogue: the newest
    offline snapshot's items, or, on a host without the offline store, the cached ones."""
    workspace = settings.workspace
    catalogue = catalogue_ids(workspace)
    cache = loaded.features.cache if isinstance(loaded.features, CachedFeatures) else None

    def ids() -> list[str]:
        return catalogue() or (cache.cached_ids() if cache is not None else [])

    known = KnownItems(ids, lambda: cache.loaded_at if cache is not None else 0.0)
    limits = EventLimits(
        settings.max_events_per_call,
        settings.max_id_length,
        settings.max_query_length,
        settings.max_event_backlog,
    )
    event_log = open_event_log(workspace, settings.event_dedup_seconds)
    return EventIntake(event_log, known, limits)


def user_fallback(settings: Settings, features: FeatureSource) -> UserFallback:
    """The user reads a server's calls make: the cached source's own (which its items
    follow), else one over the given source (a test's)."""
    if isinstance(features, CachedFeatures):
        return features.users
    return UserFallback(features.user, Policy.of(settings), UserRow.unknown(False))


def describe(running: Running | None, loaded: Loaded) -> pb.ServingInfo:
    """GetServingInfo's answer, from the parts that know it."""
    info = pb.ServingInfo(model_version=loaded.pipeline.version)
    if running is not None and running.swap is not None:
        info.model_loaded_at = running.swap.serving.loaded_at
        info.feature_service = running.swap.serving.feature_service
    if isinstance(loaded.features, CachedFeatures):
        info.cache_age_seconds = loaded.features.cache.age_seconds()
        info.cached_items = len(loaded.features.cache)
        info.last_materialization = loaded.features.feast.last_materialized()
    return info


def run(settings: Settings, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve (see serve) on uvloop, libuv's event loop. gRPC's aio server runs on any
    asyncio loop; on this one the loop's own share of a loaded server's CPU fell
    enough for 6% more QPS with one process and 12% with two, measured here."""
    import uvloop

    refuse_torch()
    uvloop.run(serve(settings, on_ready))


async def serve(settings: Settings, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain with a grace period."""
    stream = None
    if settings.stream_worker:
        from server.stream_thread import StreamThread  # the worker's imports, only where it runs

        stream = StreamThread(settings)
    loaded = load(settings)
    await warm_up(loaded)
    running = await create_server(settings, loaded)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    log.info("serving on %s:%d, model %s", settings.host, running.port, running.model_version)
    if stream is not None:
        stream.start()
    if on_ready:
        on_ready(running.port)
    await stopping.wait()
    print(f"shoprank stopping: draining for up to {settings.grace_seconds:g}s", flush=True)
    await running.stop(settings.grace_seconds)
    if stream is not None:
        stream.stop()
